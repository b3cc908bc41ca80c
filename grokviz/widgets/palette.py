"""One colour per group, shared by every grokviz view in a notebook.

A :class:`Palette` is built from an explicit group order (by default the domains of a samples
table, sorted) and owned by Python: every widget, the Timeline, the exported images and a
notebook's own altair charts draw a group in the colour the palette gives it, so ``mul`` is the
same colour in the pathway diagram, the similarity matrix's group band and the Timeline's line.

How a group gets its colour:

* a domain: the next hue of a colour-blind-safe categorical set (Okabe & Ito's; past its seven
  hues, Paul Tol's muted ones), in the palette's domain order, so filtering samples never moves a
  colour;
* a negative control (a domain whose samples have ``control = True``: random targets, memorized
  but never generalized): a neutral grey, drawn dashed in the Timeline and labelled "(control)";
* ``"global"`` (every domain at once): the neutral ink colour of the theme;
* a family of numbered groups such as ``Pretrain@250``, ``Pretrain@500`` (memorization onsets) or
  ``Test@1000``: ordered shades of one hue, light for the earliest and dark for the latest; the
  hue is the domain's when the family is named after a domain (``add@250``), else a hue of its own;
* any other group: the next unused hue.

Examples
--------
>>> palette = Palette(["add", "sub", "mul", "div"])
>>> palette["add"], palette["mul"]
('#0072B2', '#009E73')
>>> palette.covering(["Pretrain@250", "Pretrain@500"]).colors(["Pretrain@250", "Pretrain@500"])
['#CFB8F0', '#4E1E7B']
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from grokviz.errors import InputError

__all__ = ["CATEGORICAL", "Palette"]

#: Okabe & Ito's colour-blind-safe set without black, yellow last (it is faint on white), then
#: Paul Tol's muted set for an eighth domain and beyond (less safe: each legend names its group).
CATEGORICAL: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#D55E00",  # vermillion
    "#56B4E9",  # sky blue
    "#C9B200",  # yellow, darkened from #F0E442 so that a line of it reads on white
    "#332288",  # Tol indigo
    "#882255",  # Tol wine
    "#999933",  # Tol olive
    "#44AA99",  # Tol teal
)
#: The ink of "global" (all domains together): dark on light pages, light on dark ones.
NEUTRAL = {"light": "#3A3A3A", "dark": "#DADADA"}
#: Negative controls: a neutral grey that reads on both themes; several controls get shades.
CONTROL = "#8C8C8C"
#: Hues of numbered families not named after a domain, in this order: memorization onsets, test
#: onsets, then others (picked so they differ from the first four domain hues).
FAMILY_HUES = {"Pretrain": "#6A3D9A", "Test": "#1B7F79"}
_OVERALL = ("global", "all")
_NUMBERED = re.compile(r"^(?P<family>.+?)@(?P<n>-?\d+(\.\d+)?)$")


# -- colour arithmetic in OKLab (perceptually even shades) -----------------------------------------


def _to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _to_srgb(c: float) -> float:
    c = min(1.0, max(0.0, c))
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def _hex_to_oklab(hex_: str) -> tuple[float, float, float]:
    r, g, b = (_to_linear(int(hex_[i : i + 2], 16) / 255) for i in (1, 3, 5))
    lms = (
        0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b,
        0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b,
        0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b,
    )
    l_, m_, s_ = (math.copysign(abs(v) ** (1 / 3), v) for v in lms)
    return (
        0.2104542553 * l_ + 0.7936177850 * m_ - 0.0040720468 * s_,
        1.9779984951 * l_ - 2.4285922050 * m_ + 0.4505937099 * s_,
        0.0259040371 * l_ + 0.7827717662 * m_ - 0.8086757660 * s_,
    )


def _oklab_to_hex(lab: tuple[float, float, float]) -> str:
    lightness, a, b = lab
    l_ = lightness + 0.3963377774 * a + 0.2158037573 * b
    m_ = lightness - 0.1055613458 * a - 0.0638541728 * b
    s_ = lightness - 0.0894841775 * a - 1.2914855480 * b
    long, medium, short = l_**3, m_**3, s_**3
    rgb = (
        4.0767416621 * long - 3.3077115913 * medium + 0.2309699292 * short,
        -1.2684380046 * long + 2.6097574011 * medium - 0.3413193965 * short,
        -0.0041960863 * long - 0.7034186147 * medium + 1.7076147010 * short,
    )
    return "#" + "".join(f"{round(_to_srgb(c) * 255):02X}" for c in rgb)


def shades(base: str, n: int) -> list[str]:
    """``n`` shades of ``base`` from light to dark, keeping its hue (OKLab lightness steps).

    Examples
    --------
    >>> shades("#0072B2", 1)
    ['#0072B2']
    >>> len(set(shades("#0072B2", 12)))
    12
    """
    if n <= 1:
        return [base.upper()] * max(n, 0)
    _, a, b = _hex_to_oklab(base)
    hi, lo = 0.82, 0.36  # light enough to tell apart from white, dark enough from black
    out = []
    for i in range(n):
        t = i / (n - 1)
        lightness = hi + (lo - hi) * t
        # Fade the chroma towards the light end, where saturated colours leave the sRGB gamut.
        chroma = 0.55 + 0.45 * t
        out.append(_oklab_to_hex((lightness, a * chroma, b * chroma)))
    return out


def _legend_rank(group: str) -> tuple[int, str, float, str]:
    """Legend order of groups beyond the domains: numbered families by number, then the rest."""
    numbered = _number(group)
    if numbered is not None:
        return (0, numbered[0], numbered[1], group)
    return (1, "", 0.0, group)


def _number(group: str) -> tuple[str, float] | None:
    match = _NUMBERED.match(group)
    if match is None:
        return None
    return match.group("family"), float(match.group("n"))


class Palette:
    """One colour per group, in an explicit group order, shared by linked views.

    Parameters
    ----------
    domains
        The domains in the order their hues are assigned (keep it fixed to keep colours fixed).
    controls
        Groups that are negative controls (random targets): drawn grey, dashed in the Timeline,
        labelled "(control)" in legends. They may also be listed in ``domains``.
    groups
        Further groups to colour, e.g. a metrics table's ``global`` and ``Pretrain@<step>``.

    Examples
    --------
    >>> palette = Palette(["math", "code"], controls=["random"])
    >>> palette["code"], palette["random"], palette.label("random")
    ('#E69F00', '#8C8C8C', 'random (control)')
    >>> palette.is_control("random")
    True
    """

    def __init__(
        self,
        domains: Iterable[str] = (),
        *,
        controls: Iterable[str] = (),
        groups: Iterable[str] = (),
    ) -> None:
        control_list = list(dict.fromkeys(str(c) for c in controls))
        self._controls = control_list
        self._domains = [d for d in dict.fromkeys(str(d) for d in domains) if d not in control_list]
        known = set(self._domains) | set(control_list)
        extra = sorted(
            dict.fromkeys(str(g) for g in groups if str(g) not in known), key=_legend_rank
        )
        overall = [g for g in extra if g in _OVERALL]
        rest = [g for g in extra if g not in _OVERALL]
        self._groups = list(dict.fromkeys([*overall, *self._domains, *rest, *control_list]))
        self._light, self._dark = self._assign()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_samples(
        cls, samples: Any, *, by: str = "domain", groups: Iterable[str] = ()
    ) -> Palette:
        """The palette of a samples table's ``by`` column: its values sorted, controls last.

        A Boolean ``control`` column marks negative-control samples; a value of ``by`` whose
        samples are all controls is a control group.

        Examples
        --------
        >>> import polars as pl
        >>> samples = pl.DataFrame({"sample_id": ["a", "b", "c"], "domain": ["sub", "add", "random"],
        ...                         "control": [False, False, True]})
        >>> Palette.from_samples(samples).groups
        ['add', 'sub', 'random']
        """
        import polars as pl

        frame = samples if isinstance(samples, pl.DataFrame) else pl.DataFrame(samples)
        if by not in frame.columns:
            msg = f"cannot colour by {by!r}: the samples table has columns {frame.columns}"
            raise InputError(msg)
        values = frame.select(pl.col(by).cast(pl.String)).to_series()
        controls: list[str] = []
        if "control" in frame.columns:
            flagged = (
                frame.select(
                    pl.col(by).cast(pl.String).alias("g"), pl.col("control").fill_null(False)
                )
                .group_by("g")
                .agg(pl.col("control").all())
                .filter(pl.col("control"))
            )
            controls = sorted(str(g) for g in flagged["g"].drop_nulls().to_list())
        domains = sorted(str(v) for v in values.drop_nulls().unique().to_list())
        return cls(domains, controls=controls, groups=groups)

    @classmethod
    def from_groups(cls, groups: Iterable[str], *, controls: Iterable[str] = ()) -> Palette:
        """A palette of groups seen in a table: plain names become domains, sorted.

        ``global`` and numbered groups (``Pretrain@250``) are not domains; they get their own
        colours (see the module docstring).

        Examples
        --------
        >>> Palette.from_groups(["global", "sub", "add", "Pretrain@250"]).domains
        ['add', 'sub']
        """
        names = [str(g) for g in groups]
        domains = sorted({g for g in names if g not in _OVERALL and _number(g) is None})
        return cls(domains, controls=controls, groups=names)

    def covering(self, groups: Iterable[str]) -> Palette:
        """This palette if it knows every group in ``groups``, else one extended by the others.

        Domain hues never move: new groups get new colours (and new members of a numbered
        family re-space that family's shades).
        """
        new = [str(g) for g in groups if str(g) not in self._light]
        if not new:
            return self
        return Palette(self._domains, controls=self._controls, groups=[*self._groups, *new])

    def merged(self, other: Palette) -> Palette:
        """This palette extended by ``other``'s domains, controls and groups (ours keep hues)."""
        domains = [*self._domains, *(d for d in other._domains if d not in self._domains)]
        controls = [*self._controls, *(c for c in other._controls if c not in self._controls)]
        return Palette(domains, controls=controls, groups=[*self._groups, *other._groups])

    # -- the assignment ----------------------------------------------------------------------

    def _assign(self) -> tuple[dict[str, str], dict[str, str]]:
        light: dict[str, str] = {}
        dark: dict[str, str] = {}
        hues = iter(CATEGORICAL)
        used: list[str] = []

        def next_hue() -> str:
            for hue in hues:
                if hue not in used:
                    used.append(hue)
                    return hue
            # Past every categorical hue: repeat them, one shade lighter each round.
            k = len(used)
            used.append(f"#{k}")
            return shades(CATEGORICAL[k % len(CATEGORICAL)], 3)[0]

        for domain in self._domains:
            light[domain] = next_hue()
        greys = shades(CONTROL, len(self._controls)) if len(self._controls) > 1 else [CONTROL]
        for control, grey in zip(self._controls, greys, strict=False):
            light[control] = grey
        families: dict[str, list[tuple[float, str]]] = {}
        others: list[str] = []
        for group in self._groups:
            if group in light:
                continue
            numbered = _number(group)
            if group in _OVERALL:
                light[group] = NEUTRAL["light"]
                dark[group] = NEUTRAL["dark"]
            elif numbered is not None:
                families.setdefault(numbered[0], []).append((numbered[1], group))
            else:
                others.append(group)
        for family, members in families.items():
            if family in light:
                base = light[family]
            elif family in FAMILY_HUES:
                base = FAMILY_HUES[family]
            else:
                base = next_hue()
            ordered = [g for _, g in sorted(members)]
            for group, colour in zip(ordered, shades(base, len(ordered)), strict=True):
                light[group] = colour
        for group in others:
            light[group] = next_hue()
        for group, colour in light.items():
            dark.setdefault(group, colour)
        return light, dark

    # -- reading -----------------------------------------------------------------------------

    @property
    def domains(self) -> list[str]:
        """The domains, in hue order."""
        return list(self._domains)

    @property
    def controls(self) -> list[str]:
        """The negative-control groups."""
        return list(self._controls)

    @property
    def groups(self) -> list[str]:
        """Every group the palette colours, in legend order: domains, other groups, controls."""
        return list(self._groups)

    def __contains__(self, group: object) -> bool:
        return group in self._light

    def __getitem__(self, group: str) -> str:
        return self.color(group)

    def color(self, group: str, *, theme: str = "light") -> str:
        """The colour of ``group`` as ``#RRGGBB``; ``theme`` ``"dark"`` lightens the neutral ink.

        Raises
        ------
        InputError
            The palette does not know ``group``; extend it with :meth:`covering`.
        """
        table = self._dark if theme == "dark" else self._light
        if group not in table:
            msg = (
                f"the palette has no colour for group {group!r}; it knows {self._groups[:8]}... "
                "Build it with Palette.from_samples(...) or extend it: palette.covering([...])"
            )
            raise InputError(msg)
        return table[group]

    def colors(self, groups: Sequence[str], *, theme: str = "light") -> list[str]:
        """The colours of ``groups``, in that order."""
        return [self.color(g, theme=theme) for g in groups]

    def is_control(self, group: str) -> bool:
        """Whether ``group`` is a negative control (random targets)."""
        return group in self._controls

    def label(self, group: str) -> str:
        """The legend label of ``group``: its name, and "(control)" for a control."""
        return f"{group} (control)" if group in self._controls else group

    def order(self, groups: Iterable[str]) -> list[str]:
        """``groups`` sorted in legend order (unknown groups last, by name)."""
        rank = {g: i for i, g in enumerate(self._groups)}
        return sorted(dict.fromkeys(groups), key=lambda g: (rank.get(g, len(rank)), g))

    def to_json(self, groups: Iterable[str] | None = None) -> dict[str, Any]:
        """What the front end receives: groups in legend order, colours per theme, controls.

        Examples
        --------
        >>> Palette(["a"]).to_json()["light"]
        {'a': '#0072B2'}
        """
        names = self._groups if groups is None else self.order(groups)
        return {
            "groups": list(names),
            "light": {g: self._light[g] for g in names if g in self._light},
            "dark": {g: self._dark[g] for g in names if g in self._dark},
            "controls": [g for g in names if g in self._controls],
            "labels": {g: self.label(g) for g in names},
        }

    def altair_scale(self, groups: Sequence[str] | None = None) -> Any:
        """An ``altair.Scale`` giving each group its palette colour (for a notebook's own charts).

        Examples
        --------
        >>> Palette(["add", "sub"]).altair_scale().to_dict()  # doctest: +SKIP
        {'domain': ['add', 'sub'], 'range': ['#0072B2', '#E69F00']}
        """
        import altair as alt

        names = self._groups if groups is None else list(groups)
        return alt.Scale(domain=list(names), range=self.colors(names))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Palette) and other.to_json() == self.to_json()

    def __hash__(self) -> int:
        return hash(tuple(self._light.items()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{g}={self._light[g]}" for g in self._groups[:6])
        more = "" if len(self._groups) <= 6 else f", ... ({len(self._groups)} groups)"
        return f"Palette({shown}{more})"

    def _repr_html_(self) -> str:
        items = "".join(
            f'<span style="margin-right:10px;white-space:nowrap">'
            f'<span style="display:inline-block;width:10px;height:10px;border-radius:2px;'
            f'background:{self._light[g]};margin-right:4px"></span>{self.label(g)}</span>'
            for g in self._groups
        )
        return f"<div>{items}</div>"


def palette_for(
    palette: Palette | None,
    groups: Iterable[str],
    *,
    samples: Any = None,
    by: str | None = None,
) -> Palette:
    """The palette a view uses: ``palette`` extended to its groups, else one derived from
    ``samples[by]`` (all its values, so a view of some samples keeps the full table's colours),
    else from the groups themselves."""
    names = list(groups)
    if palette is not None:
        return palette.covering(names)
    if samples is not None and by:
        try:
            return Palette.from_samples(samples, by=by).covering(names)
        except ValueError:
            pass
    return Palette.from_groups(names)


def coerce(value: Palette | Mapping[str, str] | Sequence[str] | None) -> Palette | None:
    """Accept a Palette, a list of domains (their hue order) or None."""
    if value is None or isinstance(value, Palette):
        return value
    if isinstance(value, Mapping):
        msg = "give a Palette or a list of groups in hue order, not a mapping of colours"
        raise InputError(msg)
    return Palette([str(v) for v in value])
