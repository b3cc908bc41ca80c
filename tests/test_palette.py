"""The shared Palette: one colour per group, from an explicit order, the same for every view."""

from __future__ import annotations

import colorsys

import polars as pl
import pytest

from grokviz.errors import InputError
from grokviz.widgets.palette import CATEGORICAL, CONTROL, Palette, shades


def _lightness(hex_: str) -> float:
    r, g, b = (int(hex_[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(r, g, b)[1]


def test_domains_take_the_colour_blind_safe_hues_in_the_given_order() -> None:
    palette = Palette(["sub", "add", "mul"])
    assert palette.colors(["sub", "add", "mul"]) == list(CATEGORICAL[:3])
    assert palette.groups == ["sub", "add", "mul"]
    # Okabe & Ito's blue, orange, bluish green, reddish purple: distinct for the common CVD types.
    assert CATEGORICAL[:4] == ("#0072B2", "#E69F00", "#009E73", "#CC79A7")


def test_filtering_samples_never_moves_a_colour() -> None:
    samples = pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(6)],
            "domain": ["sub", "add", "mul", "div", "add", "sub"],
        }
    )
    full = Palette.from_samples(samples)
    assert full.domains == ["add", "div", "mul", "sub"]  # sorted: stable whatever the row order
    few = Palette.from_samples(samples.filter(pl.col("domain").is_in(["mul", "add"])))
    assert few["mul"] != full["mul"]  # a palette of fewer domains is another palette...
    # ...which is why a view of some samples derives its palette from the whole table:
    from grokviz.widgets.palette import palette_for

    shown = palette_for(None, ["mul"], samples=samples, by="domain")
    assert shown["mul"] == full["mul"]
    # and extending a palette never recolours the groups it had.
    wider = full.covering(["global", "Pretrain@250", "other"])
    assert all(wider[g] == full[g] for g in full.groups)


def test_controls_are_grey_labelled_and_listed_last() -> None:
    samples = pl.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "domain": ["math", "random", "code", "random"],
            "control": [False, True, False, True],
        }
    )
    palette = Palette.from_samples(samples)
    assert palette.domains == ["code", "math"]
    assert palette.controls == ["random"]
    assert palette.groups[-1] == "random"
    assert palette["random"] == CONTROL
    assert palette.label("random") == "random (control)" and palette.label("math") == "math"
    assert palette.is_control("random") and not palette.is_control("math")
    two = Palette(["a"], controls=["r1", "r2"])
    assert len({two["r1"], two["r2"]}) == 2  # shades of grey, still told apart
    for grey in (two["r1"], two["r2"], CONTROL):
        r, g, b = (int(grey[i : i + 2], 16) for i in (1, 3, 5))
        assert r == g == b  # neutral


def test_numbered_groups_are_ordered_shades_of_one_hue() -> None:
    groups = [f"Pretrain@{s}" for s in (2000, 250, 500, 1000)]
    palette = Palette.from_groups(["global", "add", *groups])
    ordered = ["Pretrain@250", "Pretrain@500", "Pretrain@1000", "Pretrain@2000"]
    assert palette.groups == ["global", "add", *ordered]  # by step, not by text
    light = [_lightness(palette[g]) for g in ordered]
    assert light == sorted(light, reverse=True)  # light to dark as the onset moves on
    hues = {
        round(colorsys.rgb_to_hls(*(int(palette[g][i : i + 2], 16) / 255 for i in (1, 3, 5)))[0], 1)
        for g in ordered
    }
    assert len(hues) <= 2  # one hue (gamut clipping may move the darkest a little)
    # A family named after a domain takes that domain's hue.
    by_domain = Palette(["add"], groups=["add@1", "add@2"])
    assert _lightness(by_domain["add@1"]) > _lightness(by_domain["add@2"])
    assert len(set(shades("#0072B2", 12))) == 12


def test_global_is_the_themes_ink_and_unknown_groups_say_what_to_do() -> None:
    palette = Palette.from_groups(["global", "add"])
    assert palette.color("global") == "#3A3A3A"
    assert palette.color("global", theme="dark") == "#DADADA"
    assert palette.color("add", theme="dark") == palette["add"]  # hues are the same on both
    with pytest.raises(InputError, match="covering"):
        palette["mul"]
    json_ = palette.to_json()
    assert json_["groups"] == ["global", "add"] and json_["labels"]["add"] == "add"


def test_merging_keeps_the_first_palettes_hues() -> None:
    a = Palette(["add", "sub"])
    b = Palette(["mul", "add"])
    merged = a.merged(b)
    assert merged.domains == ["add", "sub", "mul"]
    assert merged["add"] == a["add"] and merged["sub"] == a["sub"]
    assert merged == a.merged(b) and merged != a


def test_altair_scale_gives_each_group_its_colour() -> None:
    pytest.importorskip("altair")
    scale = Palette(["add", "sub"]).altair_scale().to_dict()
    assert scale == {"domain": ["add", "sub"], "range": ["#0072B2", "#E69F00"]}
