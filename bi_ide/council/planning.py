"""Council-guided training (seed §2.3): priorities, weaknesses, improvements, a proposed run.

1. The high council's priorities: the validation domains by their last bits per byte, weakest first.
2. The shadow members' weaknesses: domains whose bpb rose or stayed flat, and recent failed runs.
3. The light members' improvements: domains still improving at the end (train longer), the weak
   domain's share of the data, a larger preset where the fleet's largest GPU holds it.
4. A proposed TrainConfig (checked by TrainConfig itself) and data mix, with the `bi-ide train run`
   command that launches it.
"""

from __future__ import annotations

import shlex

from bi_ide.council.evidence import FIT_MARGIN, GB, fleet_gpus, training_memory_bytes
from bi_ide.errors import ConfigError
from bi_ide.training.config import RECIPES, TrainConfig, recipe

PRESET_LADDER = ("small", "medium", "large", "xlarge")
BASE_RECIPE = "small-cpu"
IMPROVING = -0.02  # relative bpb change that counts as still improving
MIN_SHARE = 0.1


def plan_training(store, *, base_recipe: str = BASE_RECIPE) -> dict:
    """The council's training plan from the store's runs, metrics and fleet (a HubClient asks the hub)."""
    if hasattr(store, "plan_council_training"):
        return store.plan_council_training(base_recipe=base_recipe)
    if base_recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {base_recipe!r}; choose one of: {', '.join(RECIPES)}")
    facts = store.council_training_facts()
    bpb = facts["bpb"].to_dicts()
    domains = _last_bpb(bpb)
    priorities = [{"domain": d, "bpb": v} for d, v in sorted(domains.items(), key=lambda kv: -kv[1])]
    weaknesses, improvements = _shadow_and_light(bpb, facts["runs"].to_dicts())
    overrides, why = _proposal(store, bpb, base_recipe)
    improvements += why
    config = recipe(base_recipe, **overrides)
    mix = _mix(domains)
    if mix:
        improvements.append("Weight the data mix toward the weakest domain: "
                            + ", ".join(f"{d} {s:.0%}" for d, s in mix.items()) + ".")
    return {
        "priorities": priorities,
        "weaknesses": weaknesses or ["The shadow members found no weakness in the recorded runs."],
        "improvements": improvements,
        "data_mix": mix,
        "recipe": base_recipe,
        "overrides": overrides,
        "config": config.to_dict(),
        "command": launch_command(base_recipe, overrides),
    }


def launch_command(base_recipe: str, overrides: dict) -> list[str]:
    cmd = ["bi-ide", "train", "run", "--recipe", base_recipe]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def command_text(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def _last_bpb(bpb: list[dict]) -> dict[str, float]:
    """Per domain (val_bpb_<domain>), the newest run's last value."""
    out: dict[str, float] = {}
    for row in bpb:  # newest run first is not guaranteed here: keep the best (lowest) last value per domain
        domain = row["name"].removeprefix("val_bpb_") or "all"
        out[domain] = min(out.get(domain, row["last"]), row["last"])
    return out


def _shadow_and_light(bpb: list[dict], runs: list[dict]) -> tuple[list[str], list[str]]:
    weaknesses, improvements = [], []
    for row in bpb:
        if row["points"] < 2:
            continue
        change = (row["last"] - row["first"]) / max(row["first"], 1e-9)
        where = f"{row['name']} of run {row['run_id']}"
        if change > -IMPROVING:
            weaknesses.append(f"{where} rose from {row['first']:.3f} to {row['last']:.3f}: overfitting or too high a "
                              "learning rate.")
        elif change > IMPROVING:
            weaknesses.append(f"{where} stayed flat at {row['last']:.3f}: the model has stopped learning there.")
        else:
            improvements.append(f"{where} was still falling ({row['first']:.3f} → {row['last']:.3f}): train longer.")
    failed = [r for r in runs if r["status"] == "failed"][:3]
    weaknesses += [f"Run {r['name']} ({r['id']}) failed" + (f": {r['error'].splitlines()[0][:120]}" if r["error"]
                                                             else ".") for r in failed]
    return weaknesses, improvements


def _proposal(store, bpb: list[dict], base_recipe: str) -> tuple[dict, list[str]]:
    base = recipe(base_recipe)
    overrides: dict = {}
    why: list[str] = []
    still_falling = any(r["points"] >= 2 and (r["last"] - r["first"]) / max(r["first"], 1e-9) < IMPROVING
                        for r in bpb)
    if still_falling and base.max_steps:
        overrides["max_steps"] = base.max_steps * 2
        why.append(f"Double max_steps to {base.max_steps * 2}: validation bpb was still falling.")
    gpus = [g for g in fleet_gpus(store.council_fleet_facts()) if g["memory_bytes"]]
    if gpus:
        largest = max(gpus, key=lambda g: g["memory_bytes"])
        fits = [p for p in PRESET_LADDER if training_memory_bytes(p, batch_size=base.batch_size, seq_len=base.seq_len)
                ["bytes"] <= FIT_MARGIN * largest["memory_bytes"]]
        if fits and PRESET_LADDER.index(fits[-1]) > PRESET_LADDER.index(base.preset if base.preset in PRESET_LADDER
                                                                        else "small"):
            overrides.update(preset=fits[-1], device="auto")
            why.append(f"Train {fits[-1]}: it fits on {largest['label']} ({largest['memory_bytes'] / GB:.0f} GB), the "
                       "largest GPU in the fleet.")
    TrainConfig.from_dict({**base.to_dict(), **overrides})  # refused here, not at launch, if a value is wrong
    return overrides, why


def _mix(domains: dict[str, float]) -> dict[str, float]:
    """Shares proportional to bpb (weaker domains get more), each at least MIN_SHARE."""
    if len(domains) < 2:
        return {}
    total = sum(domains.values())
    raw = {d: max(MIN_SHARE, v / total) for d, v in domains.items()}
    norm = sum(raw.values())
    return {d: round(v / norm, 3) for d, v in sorted(raw.items(), key=lambda kv: -kv[1])}
