"""Model soups (Wortsman et al., ICML 2022; mlfoundations/model-soups @ d5398f1, main.py): average the weights of
several fine-tunes of the same model.

- Uniform soup: the plain mean of every ingredient's state dict, every tensor (head included), weight 1/n.
- Greedy soup: ingredients sorted by their held-out accuracy, best first; the soup starts as the best ingredient
  (its stored score is the bar, not re-evaluated) and each next one is tried once, in order: the running mean
  mean * n/(n+1) + new/(n+1) is kept only if its held-out score is strictly greater than the best so far
  (main.py: `if held_out_val_accuracy > best_val_acc_so_far`).

Ingredients: the finished `ft` runs of the same dataset, protocol and model with this run's seed, one per
hyperparameter draw (`bench sweep --method ft --seed S --hparams-seed 0 1 2 3`): the official soups vary
hyperparameters (lr, wd, augmentation, epochs) from one initial model, as our draws do. Needs two or more.
Deviations, said in the README's methods table: the held-out set is the protocol's ID val, not 2 % of the training
set held out of fine-tuning (ImageNet2p), and the score is the protocol's metric (macro-F1 on iWildCam), not always
accuracy; each ingredient's score is its selected checkpoint's ID-val score from its record (as the official code
reads each model's stored score); ties in the sort keep the store's order (seed, draw, run id) where the official
reverse of an ascending sort reverses tied models. The official pool also counts the LP initialisation as an
ingredient; ours are fine-tunes only.
"""
from __future__ import annotations

from bench.errors import BenchError
from bench.methods import register_method
from bench.methods.posthoc import FromFinishedRuns, load_finetuned, running_mean, runs_of_seed
from bench.weights import clone_state


def greedy_soup(scores: list[float], load, evaluate) -> tuple[dict, list[int], list[float | None]]:
    """`scores[i]`: ingredient i's own held-out score; `load(i)`: its state dict; `evaluate(state)`: a candidate
    soup's held-out score. Returns (soup, ingredients kept in the order added, the score of each candidate soup
    tried, None for the first)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep their input order
    soup, kept, best = load(order[0]), [order[0]], scores[order[0]]
    tried: list[float | None] = [None] * len(scores)
    for i in order[1:]:
        candidate = running_mean(soup, len(kept), load(i))
        score = evaluate(candidate)
        tried[i] = score
        if score > best:  # strictly better, as the official rule
            soup, best = candidate, score
            kept.append(i)
    return soup, kept, tried


def uniform_soup(count: int, load) -> dict:
    soup = load(0)
    for i in range(1, count):
        soup = running_mean(soup, i, load(i))
    return soup


class _Soup(FromFinishedRuns):
    example_inputs = ((0, 0), (0, 1))  # two ingredients of one seed
    info_key = "soup"
    greedy = False

    @classmethod
    def planned_work(cls, hp, protocol, sizes):  # ingredients: the recommended ft draws 0-3 of each seed (0: ft's row)
        scored = sizes[protocol.id_val_split] * (4 if cls.greedy else 0)  # each candidate soup on ID val
        return {**super().planned_work(hp, protocol, sizes), "forward_images": scored, "extra_runs": {"ft draws 1-3": ("ft", 3)}}

    @classmethod
    def pick_inputs(cls, runs, config):
        seed = config["seed"]
        mine = runs_of_seed(runs, seed)
        if len(mine) < 2:
            raise BenchError(f"{cls.name} with seed {seed} averages the ft runs of seed {seed}, one per hyperparameter "
                             f"draw; {len(mine)} found: run `bench sweep --method ft --seed {seed} --hparams-seed 0 1 2 3` "
                             "first")
        return mine

    def build(self):
        runs = self.ctx.inputs
        model = self.ctx.zero_shot_classifier()
        load = lambda i: clone_state(load_finetuned(self.ctx, runs[i]["run_id"]))
        scores = [float(r["selection"]["best_score"]) for r in runs]
        if self.greedy:
            def evaluate(state):
                model.load_state_dict(state)
                return self.score(model)

            soup, kept, tried = greedy_soup(scores, load, evaluate)
        else:
            soup, kept, tried = uniform_soup(len(runs), load), list(range(len(runs))), [None] * len(runs)
        model.load_state_dict(soup)
        self._info = {"ingredients": [{"run_id": r["run_id"], "hparams_seed": r["hparams_seed"], "id_val": s,
                                       "soup_id_val_when_tried": t} for r, s, t in zip(runs, scores, tried)],
                      "kept": [runs[i]["run_id"] for i in kept], "size": len(kept), "of": len(runs)}
        return model

    @classmethod
    def selected(cls, method_info: dict) -> str | None:
        soup = method_info.get("soup")
        return f"{soup['size']} of {soup['of']} ft runs" if soup else None


@register_method("soup-uniform")
class UniformSoup(_Soup):
    description = "uniform model soup: the mean of the ft runs of one seed over hyperparameter draws"


@register_method("soup-greedy")
class GreedySoup(_Soup):
    description = "greedy model soup: ft runs added best-first while the soup's ID-val score strictly improves"
    greedy = True
