"""Procedural CelebA-like face images whose hair colour is the class, with CelebA's imbalance.

Each image is drawn from a few dozen random numbers (pose, skin, hair, lighting, camera), fully
vectorized over a chunk of images. Hair colour and texture carry the class, and the attributes
change the picture as they do in photos: men have shorter hair and often stubble, old people
have wrinkles, paler skin and greying hair. Lighting, white balance, pose, noise and a small
label-noise rate make neighbouring classes (black/brown, blond/gray, bald/gray) genuinely
confusable, so a small CNN should land well below 100 % accuracy.

Class frequencies and the male/young share per class follow CelebA's five-class subset, and
the binary blond task follows CelebA's blond x male x young counts (``celeba-facts.md``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qs

import numpy as np

from qbias_check.datasets.evalset import EvalSet

HAIR_CLASSES = ("bald", "black", "blond", "brown", "gray")
BLOND_CLASSES = ("not_blond", "blond")
MALE_GROUPS = ("female", "male")
YOUNG_GROUPS = ("old", "young")

# CelebA's five-class subset (exactly one hair label), N = 124,892: count, share male, share young.
HAIR_TABLE: Mapping[str, tuple[int, float, float]] = {
    "bald": (3_384, 0.996, 0.298),
    "black": (47_264, 0.520, 0.863),
    "blond": (28_251, 0.051, 0.836),
    "brown": (39_165, 0.309, 0.857),
    "gray": (6_828, 0.869, 0.038),
}

# CelebA, all 202,599 images: (blond, male, young) -> count.
BLOND_TABLE: Mapping[tuple[bool, bool, bool], int] = {
    (True, True, True): 1_154,
    (True, True, False): 595,
    (True, False, True): 23_619,
    (True, False, False): 4_615,
    (False, True, True): 52_293,
    (False, True, False): 30_392,
    (False, False, True): 79_668,
    (False, False, False): 10_263,
}

LABEL_NOISE = 0.025
# When a label is wrong, the picture shows a neighbour an annotator could mistake it for.
NEIGHBOURS: Mapping[str, tuple[str, ...]] = {
    "bald": ("gray",),
    "black": ("brown",),
    "blond": ("gray", "brown"),
    "brown": ("black", "blond"),
    "gray": ("blond", "bald"),
}

CHUNK = 128
BAD_COUNT = "n must be a positive integer, got {n!r}"
BAD_SIZE = "size must be an integer of at least 16 pixels, got {size!r}"
BAD_ADDRESS = (
    "{address}: expected synthetic:hair or synthetic:blond with optional "
    "?n=...&seed=...&size=... (got {problem})"
)


def make_hair(n: int, *, seed: int = 0, size: int = 64) -> EvalSet:
    """The five-class hair-colour set (bald, black, blond, brown, gray) with male and young."""
    _check(n, size)
    rng = np.random.default_rng([seed, 1])
    counts = _allocate(n, np.array([row[0] for row in HAIR_TABLE.values()], dtype=np.float64))
    y = np.repeat(np.arange(len(HAIR_CLASSES)), counts)
    male = np.zeros(n, dtype=bool)
    young = np.zeros(n, dtype=bool)
    start = 0
    for count, (_, p_male, p_young) in zip(counts, HAIR_TABLE.values(), strict=True):
        # Exact shares within each class (then shuffled), so small sets match the table too.
        male[start : start + count] = rng.permutation(count) < round(p_male * count)
        young[start : start + count] = rng.permutation(count) < round(p_young * count)
        start += count
    order = rng.permutation(n)
    y, male, young = y[order], male[order], young[order]
    shown = _label_noise(y, HAIR_CLASSES, rng)
    x = render(shown, male, young, seed=seed, size=size)
    return EvalSet(
        x=x,
        y=y,
        classes=HAIR_CLASSES,
        attributes=_attributes(male, young),
        source=f"synthetic:hair?n={n}&seed={seed}&size={size}",
    )


def make_blond(n: int, *, seed: int = 0, size: int = 64) -> EvalSet:
    """The binary blond / not-blond set with CelebA's blond x male x young proportions."""
    _check(n, size)
    rng = np.random.default_rng([seed, 2])
    cells = list(BLOND_TABLE)
    counts = _allocate(n, np.array([BLOND_TABLE[c] for c in cells], dtype=np.float64))
    cell = rng.permutation(np.repeat(np.arange(len(cells)), counts))
    table = np.array(cells, dtype=bool)
    blond, male, young = table[cell, 0], table[cell, 1], table[cell, 2]
    # A not-blond person still has some hair colour: draw it from the five-class table given
    # sex and age (shares taken as independent within a class).
    others = [c for c in HAIR_CLASSES if c != "blond"]
    prior = np.array([[HAIR_TABLE[c][0] for c in others]], dtype=np.float64)
    p_male = np.array([[HAIR_TABLE[c][1] for c in others]])
    p_young = np.array([[HAIR_TABLE[c][2] for c in others]])
    m, yo = male[:, None], young[:, None]
    weight = prior * np.where(m, p_male, 1 - p_male) * np.where(yo, p_young, 1 - p_young)
    cum = np.cumsum(weight / weight.sum(axis=1, keepdims=True), axis=1)
    pick = (rng.random(n)[:, None] > cum).sum(axis=1).clip(0, len(others) - 1)
    other_index = np.array([HAIR_CLASSES.index(o) for o in others])
    hair = np.where(blond, HAIR_CLASSES.index("blond"), other_index[pick])
    shown = _label_noise(hair, HAIR_CLASSES, rng)
    x = render(shown, male, young, seed=seed, size=size)
    return EvalSet(
        x=x,
        y=blond.astype(np.int64),
        classes=BLOND_CLASSES,
        attributes=_attributes(male, young),
        source=f"synthetic:blond?n={n}&seed={seed}&size={size}",
    )


def from_address(address: str, **options: object) -> EvalSet:
    """Build a set from ``synthetic:hair?n=2000&seed=0&size=64`` (or ``synthetic:blond?...``)."""
    _, _, rest = address.partition(":")
    task, _, query = rest.partition("?")
    makers = {"hair": make_hair, "blond": make_blond}
    if task not in makers:
        raise ValueError(BAD_ADDRESS.format(address=address, problem=f"task {task!r}"))
    params: dict[str, int] = {"n": 2000, "seed": 0, "size": 64}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in params or len(values) != 1 or not values[0].lstrip("-").isdigit():
            raise ValueError(BAD_ADDRESS.format(address=address, problem=f"{key}={values}"))
        params[key] = int(values[0])
    for key, value in options.items():
        if key not in params or not isinstance(value, int):
            raise ValueError(BAD_ADDRESS.format(address=address, problem=f"option {key}={value}"))
        params[key] = value
    n = params.pop("n")
    return makers[task](n, **params)


def render(
    hair: np.ndarray,
    male: np.ndarray,
    young: np.ndarray,
    *,
    seed: int = 0,
    size: int = 64,
    workers: int | None = None,
) -> np.ndarray:
    """Draw one face per entry (hair = index into HAIR_CLASSES) as uint8 (n, size, size, 3).

    Chunk ``k`` is drawn from its own seed, so the result does not depend on ``workers``
    (threads; default: the number of CPUs).
    """
    n = len(hair)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    hair = np.asarray(hair, dtype=np.int64)
    male = np.asarray(male, dtype=bool)
    young = np.asarray(young, dtype=bool)

    def chunk(k: int) -> None:
        part = slice(k * CHUNK, min((k + 1) * CHUNK, n))
        rng = np.random.default_rng([seed, 3, k])
        out[part] = _draw(hair[part], male[part], young[part], rng, size)

    chunks = range((n + CHUNK - 1) // CHUNK)
    threads = min(workers or os.cpu_count() or 1, 8, len(chunks))
    if threads <= 1:
        for k in chunks:
            chunk(k)
    else:
        # numpy releases the GIL inside its loops, so threads use several cores.
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(chunk, chunks))
    return out


@dataclass(frozen=True)
class _HairStyle:
    """Ranges of one class's hair: lightness, warmth (yellow-red vs neutral), texture."""

    lightness: tuple[float, float]
    warmth: tuple[float, float]
    strand_freq: tuple[float, float]  # strands per unit width
    contrast: tuple[float, float]  # how strongly strands modulate brightness
    gloss: tuple[float, float]  # narrow bright sheen bands (black hair shines)
    pepper: tuple[float, float]  # share of dark strands mixed in (salt-and-pepper gray)
    crown: tuple[float, float]  # hair density on top of the head (bald: little)


STYLES: Mapping[str, _HairStyle] = {
    "bald": _HairStyle(
        (0.25, 0.75), (0.0, 0.35), (9, 14), (0.1, 0.3), (0, 0), (0.1, 0.5), (0, 0.3)
    ),
    "black": _HairStyle(
        (0.05, 0.2), (0.0, 0.45), (8, 14), (0.15, 0.4), (0.2, 0.6), (0, 0), (0.9, 1)
    ),
    "blond": _HairStyle((0.5, 0.85), (0.3, 0.8), (4, 9), (0.15, 0.35), (0, 0.2), (0, 0), (0.9, 1)),
    "brown": _HairStyle(
        (0.16, 0.42), (0.35, 0.9), (6, 11), (0.15, 0.4), (0, 0.3), (0, 0), (0.9, 1)
    ),
    "gray": _HairStyle(
        (0.4, 0.8), (0.0, 0.3), (9, 14), (0.2, 0.45), (0, 0.1), (0.1, 0.45), (0.35, 1)
    ),
}

# Colour of light (0) to dark (1) skin, RGB in [0, 1].
_SKIN_LIGHT = np.array([0.96, 0.80, 0.69], dtype=np.float32)
_SKIN_DARK = np.array([0.42, 0.28, 0.20], dtype=np.float32)
# Direction in RGB that "warmth" moves a hair colour (towards yellow-red, away from blue).
_WARM = np.array([0.45, 0.05, -0.55], dtype=np.float32)


def _draw(
    hair: np.ndarray, male: np.ndarray, young: np.ndarray, rng: np.random.Generator, size: int
) -> np.ndarray:
    b = len(hair)
    f32 = np.float32
    px = f32(2.0 / size)

    def u(lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
        return rng.uniform(lo, hi, b).astype(f32)[:, None, None]

    def per_class(attr: str) -> np.ndarray:
        lo = np.array([getattr(STYLES[c], attr)[0] for c in HAIR_CLASSES], dtype=f32)[hair]
        hi = np.array([getattr(STYLES[c], attr)[1] for c in HAIR_CLASSES], dtype=f32)[hair]
        return u(lo, hi)

    m = male[:, None, None]
    old = ~young[:, None, None]
    grid = np.linspace(-1 + px / 2, 1 - px / 2, size, dtype=f32)
    gu, gv = grid[None, None, :], grid[None, :, None]

    # Pose: shift, scale and a small tilt of the whole head.
    tilt = rng.normal(0, 0.1, b).astype(f32)[:, None, None]
    scale = u(0.88, 1.08)
    cu, cv = gu - u(-0.12, 0.12), gv - u(-0.1, 0.1)
    cos, sin = np.cos(tilt), np.sin(tilt)
    xx = (cu * cos + cv * sin) / scale
    yy = (-cu * sin + cv * cos) / scale
    edge = px / scale  # soft edges one pixel wide

    def ellipse(
        x0: float | np.ndarray,
        y0: float | np.ndarray,
        a: np.ndarray | float,
        bb: np.ndarray | float,
    ) -> np.ndarray:
        r = np.sqrt(((xx - x0) / a) ** 2 + ((yy - y0) / bb) ** 2)
        radius = np.asarray(np.minimum(a, bb), dtype=f32)
        inside: np.ndarray = np.clip((1 - r) * radius / edge + 0.5, 0, 1)
        return inside

    def band(d: np.ndarray) -> np.ndarray:
        return np.clip(d / edge + 0.5, 0, 1)

    # Background: a muted colour with a gradient and soft blobs.
    bg = rng.uniform(0.15, 0.9, (b, 1, 1, 3)).astype(f32)
    bg = bg * 0.6 + bg.mean(axis=-1, keepdims=True) * 0.4
    grad = u(-0.25, 0.25) * gu + u(-0.25, 0.25) * gv
    img = bg * (1 + grad + 0.08 * _smooth_field(rng, gu, gv, 3))[..., None]

    # Clothes on the shoulders.
    clothes = rng.uniform(0.05, 0.85, (b, 1, 1, 3)).astype(f32)
    shoulders = band(yy - 0.78 - 0.2 * np.abs(xx) ** 2) * band(0.95 - np.abs(xx))
    img = _over(img, clothes, shoulders)

    # Skin: tone, paler and less saturated with age.
    tone = u(0.0, 1.0) ** 1.5
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * tone[..., None]
    grey = skin.mean(axis=-1, keepdims=True)
    saturation = np.where(old, u(0.45, 0.75), u(0.85, 1.1))[..., None]
    skin = grey + (skin - grey) * saturation
    a_face = u(0.38, 0.46) * np.where(m, f32(1.04), f32(0.97))
    b_face = u(0.52, 0.6)
    face = ellipse(0.0, 0.05, a_face, b_face)
    neck = band(0.2 - np.abs(xx)) * band(yy - 0.3) * (1 - shoulders)
    head = np.maximum(face, neck)

    # Hair geometry: volume around the head, hairline, and length down the sides.
    volume = np.where(m, u(0.03, 0.1), u(0.08, 0.2))
    head_out = ellipse(0.0, -0.02, a_face + volume, b_face + volume * 1.2)
    hairline = np.where(m & old, u(-0.5, -0.28), u(-0.4, -0.12)) * b_face / 0.56
    length = np.where(m, u(-0.1, 0.25), u(0.2, 1.0)) * (rng.random(b) > 0.1)[:, None, None]
    top = head_out * (1 - face * band(yy - 0.05 - hairline))
    top = top * band(0.12 + length * 0.2 - yy)
    sides = (
        band(np.abs(xx) - a_face * 0.8)
        * band(a_face + volume + 0.05 + 0.12 * length - np.abs(xx))
        * band(length * 1.1 - yy)
        * band(yy + 0.2)
        * (1 - face)
    )
    shape = np.maximum(top, sides)

    # Bald heads: the top of the head is skin; thin, low crown density lets the scalp through.
    crown = per_class("crown")
    fringe = band(np.abs(xx) - a_face * 0.7) * band(yy + 0.15)
    density = np.where(crown < 0.5, np.maximum(crown, 0.75 * fringe), crown)
    scalp = np.where(crown < 0.9, head_out, f32(0)) * (1 - face)
    head = np.maximum(head, scalp)
    shine = np.where(crown < 0.5, u(0.0, 0.25), f32(0)) * ellipse(-0.1, -0.5, 0.18, 0.12)
    skin_img = skin * (1 + shine)[..., None]

    # Skin details: men's stubble, wrinkles with age, cheek shading.
    stubble_amount = np.where(m & (rng.random(b) < 0.7)[:, None, None], u(0.05, 0.25), f32(0))
    jaw = band(yy - 0.28) * face
    # One uniform field serves stubble speckles, fine hair grain and salt-and-pepper strands.
    speckle = rng.random((b, size, size), dtype=f32)
    skin_img = skin_img * (1 - (stubble_amount * jaw * (0.5 + speckle))[..., None])
    wrinkles = np.where(old, u(0.04, 0.12), u(0.0, 0.02))
    forehead = band(-0.22 - yy) * band(yy - hairline) * face
    lines = 0.5 + 0.5 * np.sin(yy * 90 + u(0, 6.3))
    crows = ellipse(-a_face * 0.75, -0.1, 0.12, 0.1) + ellipse(a_face * 0.75, -0.1, 0.12, 0.1)
    folds = (forehead * lines + crows * (0.5 + 0.5 * np.sin(xx * 70))) * wrinkles
    shade = 1 - 0.12 * np.clip(np.abs(xx) / a_face, 0, 1) ** 2 - folds
    img = _over(img, skin_img * shade[..., None], head)

    # Hair colour: lightness + warmth per class; age mixes in grey strands for every class.
    style = np.array(HAIR_CLASSES)[hair]
    light = per_class("lightness")
    warmth = per_class("warmth")
    colour = light[..., None] * (1 + warmth[..., None] * _WARM)
    greying = np.where(old & (style != "gray")[:, None, None], u(0.0, 0.4), f32(0))
    colour = colour * (1 - greying[..., None]) + f32(0.7) * greying[..., None]

    # Texture: wavy strands running down the head; gloss bands; salt-and-pepper strands.
    freq = per_class("strand_freq") * np.float32(np.pi)
    wave = u(0.0, 0.6) * np.sin(yy * u(2, 6) + u(0, 6.3))
    strands = np.sin(freq * (xx + wave) + 2.5 * _smooth_field(rng, xx, yy, 2) + u(0, 6.3))
    contrast = per_class("contrast")
    gloss = per_class("gloss") * np.exp(-(((yy - u(-0.55, -0.2)) / 0.06) ** 2))
    fine = (speckle - 0.5) * 3.4
    pepper = per_class("pepper")
    dark = (0.25 * strands + 0.25 + 0.5 * speckle < pepper).astype(f32)
    texture = 1 + contrast * strands * 0.5 + gloss * (1 + 0.5 * strands) + 0.06 * fine
    hair_img = colour * texture[..., None] * (1 - 0.55 * dark)[..., None]
    alpha = shape * np.clip(density + np.where(density < 1, 0.25 * strands, 0), 0, 1)
    img = _over(img, hair_img, alpha)

    # Eyes, eyebrows (hair-coloured, darker) and mouth.
    ex, ey = a_face * 0.42, u(-0.1, -0.02)
    eyes = ellipse(-ex, ey, 0.09, 0.045) + ellipse(ex, ey, 0.09, 0.045)
    iris = ellipse(-ex, ey, 0.04, 0.04) + ellipse(ex, ey, 0.04, 0.04)
    img = _over(img, np.full(3, 0.92, f32), np.clip(eyes, 0, 1))
    iris_colour = rng.uniform(0.05, 0.4, (b, 1, 1, 3)).astype(f32)
    img = _over(img, iris_colour, np.clip(iris, 0, 1) * np.clip(eyes * 2, 0, 1))
    brow_y = ey - 0.11
    brows = ellipse(-ex, brow_y, 0.12, 0.025) + ellipse(ex, brow_y, 0.12, 0.025)
    brow_colour = np.minimum(colour, 0.45) * 0.7
    img = _over(img, brow_colour, np.clip(brows, 0, 1) * u(0.4, 0.9))
    lips = rng.uniform(0.55, 0.8, (b, 1, 1, 1)).astype(f32) * np.array([1, 0.5, 0.5], f32)
    mouth = ellipse(0.0, u(0.3, 0.36), u(0.12, 0.2), u(0.03, 0.06))
    img = _over(img, lips * skin * 1.3, mouth)

    # Camera: exposure, directional light, white balance, blur, sensor noise.
    angle = u(0, 6.3)
    light_dir = 1 + u(0.0, 0.3) * (gu * np.cos(angle) + gv * np.sin(angle))
    exposure = u(0.7, 1.3) * light_dir
    balance = np.exp(
        rng.normal(0, 1, (b, 1, 1, 1)).astype(f32) * np.array([0.06, 0.02, -0.08], f32)
    )
    jitter = np.exp(rng.normal(0, 0.04, (b, 1, 1, 3)).astype(f32))
    img *= exposure[..., None]
    img *= balance * jitter * 255
    soft = np.flatnonzero(rng.random(b) < 0.5)
    part = img[soft]
    img[soft] = (
        part + np.roll(part, 1, 1) + np.roll(part, 1, 2) + np.roll(part, (1, 1), (1, 2))
    ) / 4
    # Sensor noise: mostly luminance, which also costs a third of per-channel noise.
    noise = rng.standard_normal((b, size, size), dtype=f32) * u(2.5, 12.5) + 0.5  # 0.5: rounding
    img += noise[..., None]
    pixels: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return pixels


def _over(base: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    mixed: np.ndarray = base + (top - base) * alpha[..., None]
    return mixed


def _smooth_field(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, waves: int) -> np.ndarray:
    # A few random plane waves: a smooth random pattern at the cost of a few sines.
    b = max(x.shape[0], y.shape[0])
    total = np.zeros(np.broadcast_shapes(x.shape, y.shape, (b, 1, 1)), dtype=np.float32)
    for _ in range(waves):
        kx, ky = rng.normal(0, 3, (2, b)).astype(np.float32)[:, :, None, None]
        phase = rng.uniform(0, 6.3, b).astype(np.float32)[:, None, None]
        total += np.sin(kx * x + ky * y + phase)
    return total / np.float32(np.sqrt(waves))


def _label_noise(y: np.ndarray, classes: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    # The picture shows a neighbouring class for a few examples whose label stays as annotated.
    shown = y.copy()
    flip = np.flatnonzero(rng.random(len(y)) < LABEL_NOISE)
    for i in flip:
        options = NEIGHBOURS[classes[y[i]]]
        shown[i] = classes.index(options[int(rng.integers(len(options)))])
    return shown


def _allocate(n: int, weights: np.ndarray) -> np.ndarray:
    # Largest-remainder rounding: counts sum to n and each is within one of n * share.
    exact = n * weights / weights.sum()
    counts: np.ndarray = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    counts[np.argsort(-remainder, kind="stable")[: n - counts.sum()]] += 1
    return counts


def _attributes(male: np.ndarray, young: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "male": np.array(MALE_GROUPS)[male.astype(np.int64)],
        "young": np.array(YOUNG_GROUPS)[young.astype(np.int64)],
    }


def _check(n: int, size: int) -> None:
    if not isinstance(n, int) or n <= 0:
        raise ValueError(BAD_COUNT.format(n=n))
    if not isinstance(size, int) or size < 16:
        raise ValueError(BAD_SIZE.format(size=size))
