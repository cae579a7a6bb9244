"""Jet 4-vector tables: readers for HDF5, npz/npy, parquet, CSV, ROOT (uproot) and (opt-in) pickle files.

Every reader returns a :class:`JetTable`: float64 numpy columns ``pt`` [GeV], ``eta``, ``phi`` [rad, in
(-pi, pi]], ``m`` [GeV] and ``E`` [GeV], one jet per row, plus an int64 ``event`` index (the event/entry each
jet came from; the row number when the file has none).

Formats (chosen by the file extension)
--------------------------------------
``.h5 .hdf5 .hdf``
    1-D datasets, anywhere in the file. The simulator's ``jets/`` group (``pt eta phi m E event``) is found
    first; plain top-level columns (``pt``, ``eta``, ...) work too.
``.npz`` / ``.npy``
    ``np.savez`` archives of 1-D arrays, or a structured ``.npy`` array with named fields (never pickled
    objects).
``.parquet .pq``, ``.csv .csv.gz .txt``
    Read with pandas (pyarrow for parquet); one jet per row.
``.root``
    A TTree read with uproot; give the tree as ``FILE.root:tree`` (or ``FILE.root:dir/tree``); without it the
    file must hold exactly one TTree. Jagged branches (one list of jets per event, e.g. NanoAOD ``Jet_pt``) are
    flattened to one jet per row and ``event`` is the entry number; flat branches are one jet per entry.
``.pkl .pickle``
    pandas pickles (a DataFrame or a dict of arrays). Loading a pickle executes code from the file, so it is
    refused unless ``allow_pickle=True`` (``--allow-pickle`` on the command line).

Recognised columns
------------------
A column set is either polar ``pt, eta, phi`` + one of ``m`` / ``mass`` / ``m0`` or ``E`` / ``e`` /
``energy``, or Cartesian ``px, py, pz`` + ``E`` / ``e`` / ``energy``. Names are matched case-insensitively
after a common prefix, so ``pt``, ``Jet_pt``, ``AK4Jet_pt``, ``jet_pt``, ``jets/pt``, ``FatJet_pt`` all work.
When several prefixes match (a NanoAOD tree has ``Jet_`` and ``FatJet_``), the prefix ``""``, ``jet``/``jets``
(ignoring ``_``, ``.``, ``/`` and case) wins if present; otherwise the reader asks for explicit columns. An
``event`` column with the same prefix (or ``event``/``eventNumber``/``evt`` at the top) gives the event index.

Explicit columns (``columns=`` / ``--columns``) override the detection:
``"pt=AK8_pt,eta=AK8_eta,phi=AK8_phi,m=AK8_msoftdrop"`` or ``"px=..,py=..,pz=..,E=.."`` (optionally
``event=...``); see :func:`parse_columns`.

Conversions
-----------
:func:`ptetaphim_from_cartesian` and :func:`cartesian_from_ptetaphim` are vectorised numpy. The mass from
``(E, p)`` is ``sqrt(max(E^2 - p^2, 0))``: rounding (float32 storage, massless jets) makes ``E^2 - p^2``
slightly negative, and such values are clipped to 0 (a genuinely space-like 4-vector is clipped too, silently).
The same clipping applies to the mass from ``(pt, eta, E)``.

Bad inputs (missing file or column, unknown extension, empty tree, NaN/Inf, ...) raise
:class:`~hep_keras.errors.DataError` with one line naming the file and the problem.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.errors import DataError
from hep_keras.physics import wrap_phi

#: the four numbers a jet is compressed to/from, in this order
VARIABLES = ("pt", "eta", "phi", "m")
#: units of :data:`VARIABLES` (and ``E``)
UNITS = {"pt": "GeV", "eta": "", "phi": "rad", "m": "GeV", "E": "GeV"}

_ALIASES: dict[str, tuple[str, ...]] = {
    "pt": ("pt",),
    "eta": ("eta",),
    "phi": ("phi",),
    "m": ("m", "mass", "m0"),
    "E": ("e", "energy"),
    "px": ("px",),
    "py": ("py",),
    "pz": ("pz",),
    "event": ("event", "eventnumber", "evt", "event_index"),
}
_COLUMN_KEYS = tuple(_ALIASES)
_PREFERRED_PREFIXES = ("", "jet", "jets")

_EXTENSIONS = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".npz": "numpy",
    ".npy": "numpy",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".txt": "csv",
    ".gz": "csv",
    ".root": "root",
    ".pkl": "pickle",
    ".pickle": "pickle",
}


@dataclasses.dataclass
class JetTable:
    """One jet per row; float64 columns in GeV / rad (shape ``(N,)`` each).

    Attributes:
        pt, eta, phi, m, E: transverse momentum [GeV], pseudorapidity, azimuth [rad, (-pi, pi]], mass [GeV],
            energy [GeV].
        event: int64 event (entry) index of each jet.
        source: the file (and tree) the jets came from, for messages.
    """

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    m: np.ndarray
    E: np.ndarray
    event: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.pt.shape[0])

    def four_vectors(self, dtype=np.float32) -> np.ndarray:
        """``(N, 4)`` array of (pt, eta, phi, m) in GeV / rad."""
        return np.stack([self.pt, self.eta, self.phi, self.m], axis=1).astype(dtype)

    def select(self, index) -> JetTable:
        """Rows ``index`` (boolean mask, slice or integer array) as a new table."""
        cols = {name: getattr(self, name)[index] for name in ("pt", "eta", "phi", "m", "E", "event")}
        return JetTable(**cols, source=self.source)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The columns as a dict (``pt eta phi m E event``)."""
        return {name: getattr(self, name) for name in ("pt", "eta", "phi", "m", "E", "event")}


# --------------------------------------------------------------------------------------------------------------
# 4-vector conversions


def ptetaphim_from_cartesian(px, py, pz, E) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(px, py, pz, E) [GeV] → (pt [GeV], eta, phi [rad], m [GeV]), arrays of shape ``(N,)``.

    ``eta = asinh(pz / pt)`` (±inf for pt = 0), ``phi = atan2(py, px)``, ``m = sqrt(max(E^2 - p^2, 0))``
    (negative ``m^2`` from rounding is clipped to 0).
    """
    px, py, pz, E = (np.asarray(a, dtype=np.float64) for a in (px, py, pz, E))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.sign(pz) * np.inf)
    phi = np.arctan2(py, px)
    p2 = px * px + py * py + pz * pz
    m = np.sqrt(np.clip(E * E - p2, 0.0, None))
    return pt, eta, phi, m


def cartesian_from_ptetaphim(pt, eta, phi, m) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pt [GeV], eta, phi [rad], m [GeV]) → (px, py, pz, E) [GeV], arrays of shape ``(N,)``."""
    pt, eta, phi, m = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi, m))
    return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), energy_from_ptetam(pt, eta, m)


def energy_from_ptetam(pt, eta, m) -> np.ndarray:
    """E = sqrt((pt cosh eta)^2 + m^2) [GeV]."""
    pt, eta, m = (np.asarray(a, dtype=np.float64) for a in (pt, eta, m))
    return np.hypot(pt * np.cosh(eta), m)


def mass_from_ptetae(pt, eta, E) -> np.ndarray:
    """m = sqrt(max(E^2 - (pt cosh eta)^2, 0)) [GeV]; negative m^2 from rounding is clipped to 0."""
    pt, eta, E = (np.asarray(a, dtype=np.float64) for a in (pt, eta, E))
    p = pt * np.cosh(eta)
    return np.sqrt(np.clip((E - p) * (E + p), 0.0, None))


def table_from_arrays(arrays: Mapping[str, np.ndarray], source: str = "", event=None) -> JetTable:
    """Build a :class:`JetTable` from ``pt eta phi`` + ``m`` or ``E``, or ``px py pz E`` columns."""
    cols = {key: np.asarray(value, dtype=np.float64).reshape(-1) for key, value in arrays.items()}
    if all(k in cols for k in ("pt", "eta", "phi")):
        pt, eta, phi = cols["pt"], cols["eta"], wrap_phi(cols["phi"])
        if "m" in cols:
            m = cols["m"]
            E = cols["E"] if "E" in cols else energy_from_ptetam(pt, eta, m)
        else:
            E = cols["E"]
            m = mass_from_ptetae(pt, eta, E)
    else:
        pt, eta, phi, m = ptetaphim_from_cartesian(cols["px"], cols["py"], cols["pz"], cols["E"])
        E = cols["E"]
    n = pt.shape[0]
    event = np.arange(n, dtype=np.int64) if event is None else np.asarray(event).astype(np.int64).reshape(-1)
    return JetTable(pt=pt, eta=eta, phi=phi, m=m, E=E, event=event, source=source)


# --------------------------------------------------------------------------------------------------------------
# column detection


def parse_columns(text: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """Parse ``"pt=Jet_pt,eta=Jet_eta,phi=Jet_phi,m=Jet_mass"`` into ``{"pt": "Jet_pt", ...}``.

    Keys: ``pt eta phi m E px py pz event`` (``mass`` → ``m``, ``e``/``energy`` → ``E``). Must give a complete
    polar (pt, eta, phi, m or E) or Cartesian (px, py, pz, E) set.
    """
    if text is None or isinstance(text, Mapping):
        mapping = dict(text) if text is not None else None
    else:
        mapping = {}
        for item in str(text).split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise DataError(f"--columns {text!r}: expected KEY=COLUMN pairs separated by commas")
            mapping[key.strip()] = value.strip()
    if mapping is None:
        return None
    out = {}
    for key, value in mapping.items():
        canonical = _canonical_key(key)
        if canonical is None:
            raise DataError(f"--columns: unknown key {key!r} (known: {', '.join(_COLUMN_KEYS)})")
        out[canonical] = value
    if not (_is_polar(out) or _is_cartesian(out)):
        raise DataError("--columns: give pt, eta, phi and m (or E), or px, py, pz and E")
    return out


def _canonical_key(key: str) -> str | None:
    low = key.strip().lower()
    for canonical, aliases in _ALIASES.items():
        if low == canonical.lower() or low in aliases:
            return canonical
    return None


def _is_polar(cols: Mapping[str, Any]) -> bool:
    return all(k in cols for k in ("pt", "eta", "phi")) and ("m" in cols or "E" in cols)


def _is_cartesian(cols: Mapping[str, Any]) -> bool:
    return all(k in cols for k in ("px", "py", "pz", "E"))


def _candidates(names: list[str]) -> dict[str, dict[str, str]]:
    """Group ``names`` by prefix: ``{prefix: {canonical key: name}}`` for every recognised suffix."""
    groups: dict[str, dict[str, str]] = {}
    for name in names:
        low = name.lower()
        for canonical, aliases in _ALIASES.items():
            for alias in aliases:
                if low.endswith(alias):
                    prefix = name[: len(name) - len(alias)]
                    groups.setdefault(prefix, {}).setdefault(canonical, name)
    return groups


def _norm_prefix(prefix: str) -> str:
    return prefix.lower().strip("_./")


def detect_columns(names: list[str], source: str) -> dict[str, str]:
    """Pick the jet columns among ``names`` (see the module docstring); DataError when none or ambiguous."""
    groups = _candidates(names)
    usable = {p: cols for p, cols in groups.items() if _is_polar(cols) or _is_cartesian(cols)}
    if not usable:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise DataError(
            f"{source}: no jet columns found (need pt/eta/phi/m or E, or px/py/pz/E, optionally prefixed like "
            f"Jet_pt; have: {shown or 'nothing'}); use --columns to name them"
        )
    # drop per-branch counters (uproot writes nJet_pt for a jagged Jet_pt)
    usable = {p: c for p, c in usable.items() if not (p[:1] in "nN" and p[1:] in usable)} or usable
    if len(usable) > 1:
        preferred = [p for p in usable if _norm_prefix(p) in _PREFERRED_PREFIXES]
        if len(preferred) != 1:
            listed = ", ".join(repr(p) for p in sorted(usable))
            raise DataError(f"{source}: several jet collections ({listed}); choose one with --columns")
        usable = {preferred[0]: usable[preferred[0]]}
    prefix, cols = next(iter(usable.items()))
    chosen = {k: cols[k] for k in ("pt", "eta", "phi", "m", "E", "px", "py", "pz") if k in cols}
    if _is_polar(chosen):
        chosen = {k: v for k, v in chosen.items() if k not in ("px", "py", "pz")}
    else:
        chosen = {k: chosen[k] for k in ("px", "py", "pz", "E")}
    event = cols.get("event") or groups.get("", {}).get("event")
    if event is not None:
        chosen["event"] = event
    return chosen


# --------------------------------------------------------------------------------------------------------------
# readers


def split_tree(path: str | os.PathLike) -> tuple[Path, str | None]:
    """Split ``FILE:tree`` into ``(Path(FILE), tree)``; a plain existing path gives ``(path, None)``."""
    text = os.fspath(path)
    if Path(text).exists() or ":" not in text:
        return Path(text), None
    file_part, _, tree = text.rpartition(":")
    return Path(file_part), (tree or None)


def file_format(path: Path) -> str:
    """The reader name for ``path`` from its extension; DataError for an unknown one."""
    suffix = path.suffix.lower()
    if suffix == ".gz" and not path.name.lower().endswith((".csv.gz", ".txt.gz")):
        suffix = ""
    fmt = _EXTENSIONS.get(suffix)
    if fmt is None:
        known = " ".join(sorted(set(_EXTENSIONS) - {".gz"}))
        raise DataError(f"{path}: unknown file extension {path.suffix or '(none)'!r} (known: {known} .csv.gz)")
    return fmt


def read_jets(
    path: str | os.PathLike,
    columns: str | Mapping[str, str] | None = None,
    allow_pickle: bool = False,
    min_pt: float | None = None,
    max_jets: int | None = None,
) -> JetTable:
    """Read a jet table from ``path`` (``FILE`` or ``FILE.root:tree``).

    Args:
        path: the input file; the format comes from the extension (see the module docstring).
        columns: explicit column names (``"pt=...,eta=...,phi=...,m=..."`` or a dict); default: detected.
        allow_pickle: allow ``.pkl``/``.pickle`` (executes code from the file).
        min_pt: keep only jets with pt >= min_pt [GeV].
        max_jets: keep only the first ``max_jets`` jets (after the pt cut).

    Returns:
        A :class:`JetTable` of float64 columns; DataError (one line) for any problem with the input.
    """
    file_path, tree = split_tree(path)
    if not file_path.exists():
        raise DataError(f"{file_path}: no such file")
    if not file_path.is_file():
        raise DataError(f"{file_path}: not a file")
    fmt = file_format(file_path)
    if tree is not None and fmt != "root":
        raise DataError(f"{path}: the FILE:tree syntax is only for ROOT files")
    explicit = parse_columns(columns)
    reader = {
        "hdf5": _read_hdf5,
        "numpy": _read_numpy,
        "parquet": _read_parquet,
        "csv": _read_csv,
        "root": _read_root,
        "pickle": _read_pickle,
    }[fmt]
    if fmt == "pickle" and not allow_pickle:
        raise DataError(
            f"{file_path}: refusing to load a pickle (loading it executes code from the file); "
            "pass --allow-pickle if you trust it"
        )
    kwargs = {"tree": tree} if fmt == "root" else {}
    table = reader(file_path, explicit, **kwargs)
    return _finish(table, min_pt, max_jets)


def _finish(table: JetTable, min_pt: float | None, max_jets: int | None) -> JetTable:
    if min_pt is not None:
        table = table.select(table.pt >= min_pt)
    if max_jets is not None:
        table = table.select(slice(0, max_jets))
    if len(table) == 0:
        cut = f" with pt >= {min_pt} GeV" if min_pt is not None else ""
        raise DataError(f"{table.source}: no jets{cut}")
    check_finite(table)
    return table


def check_finite(table: JetTable) -> None:
    """DataError naming the first variable holding NaN/Inf (or a negative pt/mass)."""
    for name in ("pt", "eta", "phi", "m", "E"):
        values = getattr(table, name)
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{table.source}: {int(bad.sum())} non-finite {name} value(s) (NaN/Inf), first at jet {first}"
            )
    if (table.pt <= 0).any():
        raise DataError(f"{table.source}: {int((table.pt <= 0).sum())} jet(s) with pt <= 0")


def _pick(source: str, arrays: Mapping[str, Any], names: list[str], explicit: dict[str, str] | None) -> JetTable:
    """Resolve the columns among ``names`` and build the table from ``arrays[name]``."""
    chosen = explicit or detect_columns(names, source)
    missing = [name for name in chosen.values() if name not in arrays]
    if missing:
        raise DataError(f"{source}: missing column/branch {missing[0]!r}")
    event_name = chosen.pop("event", None)
    cols = {key: _as_float(source, name, arrays[name]) for key, name in chosen.items()}
    lengths = {name: len(v) for name, v in zip(chosen.values(), cols.values(), strict=True)}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{source}: jet columns have different lengths {lengths}")
    event = None if event_name is None else np.asarray(arrays[event_name]).reshape(-1)
    if event is not None and len(event) != next(iter(lengths.values())):
        event = None
    return table_from_arrays(cols, source=source, event=event)


def _as_float(source: str, name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{source}: column {name!r} is not numeric (dtype {arr.dtype})")
    if arr.ndim != 1:
        raise DataError(f"{source}: column {name!r} has shape {arr.shape}; expected one value per jet")
    return arr.astype(np.float64)


def _read_hdf5(path: Path, explicit: dict[str, str] | None) -> JetTable:
    import h5py

    source = str(path)
    try:
        with h5py.File(path, "r") as handle:
            names: list[str] = []
            handle.visititems(
                lambda name, obj: (
                    names.append(name)
                    if isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.kind in "fiu"
                    else None
                )
            )
            names.sort(key=lambda n: (not n.startswith("jets/"), n.count("/"), n))
            chosen = dict(explicit) if explicit else detect_columns(names, source)
            arrays = {}
            for name in chosen.values():
                if name not in handle:
                    raise DataError(f"{source}: missing dataset {name!r}")
                arrays[name] = handle[name][()]
    except OSError as err:
        raise DataError(f"{source}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    return _pick(source, arrays, list(arrays), chosen)


def _read_numpy(path: Path, explicit: dict[str, str] | None) -> JetTable:
    source = str(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{source}: not a readable numpy file ({str(err).splitlines()[0]})") from None
    if isinstance(loaded, np.ndarray):
        if loaded.dtype.names is None:
            raise DataError(f"{source}: a .npy file must hold a structured array with named fields")
        arrays = {name: loaded[name] for name in loaded.dtype.names}
    else:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    return _pick(source, arrays, list(arrays), explicit)


def _frame_table(source: str, frame, explicit: dict[str, str] | None) -> JetTable:
    if len(frame) == 0:
        raise DataError(f"{source}: no jets (empty table)")
    arrays = {str(col): frame[col].to_numpy() for col in frame.columns}
    return _pick(source, arrays, list(arrays), explicit)


def _read_parquet(path: Path, explicit: dict[str, str] | None) -> JetTable:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types
        raise DataError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None
    return _frame_table(str(path), frame, explicit)


def _read_csv(path: Path, explicit: dict[str, str] | None) -> JetTable:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise DataError(f"{path}: not a readable CSV file ({str(err).splitlines()[0]})") from None
    return _frame_table(str(path), frame, explicit)


def _read_pickle(path: Path, explicit: dict[str, str] | None) -> JetTable:
    import pandas as pd

    try:
        obj = pd.read_pickle(path)
    except Exception as err:  # unpickling can raise anything
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if isinstance(obj, dict):
        obj = pd.DataFrame({k: np.asarray(v).reshape(-1) for k, v in obj.items()})
    if not isinstance(obj, pd.DataFrame):
        raise DataError(f"{path}: the pickle holds a {type(obj).__name__}, expected a DataFrame or dict of arrays")
    return _frame_table(str(path), obj, explicit)


def _choose_tree(path: Path, handle, tree: str | None):
    if tree is not None:
        try:
            obj = handle[tree]
        except Exception:  # uproot raises KeyInFileError (a KeyError)
            raise DataError(f"{path}: no tree {tree!r} in the file") from None
        if not hasattr(obj, "arrays"):
            raise DataError(f"{path}: {tree!r} is not a TTree")
        return obj, tree
    trees = [k.split(";")[0] for k, cls in handle.classnames().items() if cls in ("TTree", "TNtuple", "ROOT::RNTuple")]
    trees = sorted(set(trees))
    if len(trees) != 1:
        listed = ", ".join(trees) or "none"
        raise DataError(f"{path}: {len(trees)} TTrees in the file ({listed}); name one as {path}:TREE")
    return handle[trees[0]], trees[0]


def _read_root(path: Path, explicit: dict[str, str] | None, tree: str | None = None) -> JetTable:
    import awkward as ak
    import uproot

    try:
        handle = uproot.open(path)
    except Exception as err:  # uproot raises many types for non-ROOT files
        raise DataError(f"{path}: not a readable ROOT file ({str(err).splitlines()[0]})") from None
    with handle:
        ttree, tree_name = _choose_tree(path, handle, tree)
        source = f"{path}:{tree_name}"
        names = [str(k) for k in ttree.keys()]
        chosen = dict(explicit) if explicit else detect_columns(names, source)
        missing = [name for name in chosen.values() if name not in names]
        if missing:
            raise DataError(f"{source}: missing branch {missing[0]!r}")
        if ttree.num_entries == 0:
            raise DataError(f"{source}: empty tree (0 entries)")
        try:
            arrays = ttree.arrays(list(chosen.values()), library="ak")
        except Exception as err:
            raise DataError(f"{source}: cannot read branches ({str(err).splitlines()[0]})") from None
    event_name = chosen.pop("event", None)
    flat, entry = _flatten_jagged(source, {name: arrays[name] for name in chosen.values()}, ak)
    flat["__event__"] = entry
    if event_name is not None:
        event = ak.Array(arrays[event_name])
        if event.ndim == 1:  # one number per entry: broadcast to its jets
            flat["__event__"] = ak.to_numpy(event).astype(np.int64)[entry]
        elif ak.all(ak.num(event, axis=1) == ak.num(arrays[chosen["pt" if "pt" in chosen else "px"]], axis=1)):
            flat["__event__"] = ak.to_numpy(ak.flatten(event, axis=1)).astype(np.int64)
    chosen["event"] = "__event__"
    return _pick(source, flat, list(flat), chosen)


def _flatten_jagged(source: str, arrays: dict[str, Any], ak) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flatten jagged (per-event list) branches to one jet per row; returns the arrays and the entry index."""
    out: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for name, values in arrays.items():
        values = ak.Array(values)
        if values.ndim == 1:
            out[name] = ak.to_numpy(values)
            counts[name] = np.ones(len(values), dtype=np.int64)
        elif values.ndim == 2:
            counts[name] = ak.to_numpy(ak.num(values, axis=1)).astype(np.int64)
            out[name] = ak.to_numpy(ak.flatten(values, axis=1))
        else:
            raise DataError(f"{source}: branch {name!r} is nested {values.ndim - 1} levels; expected jets per event")
    first_name, first = next(iter(counts.items()))
    for name, this in counts.items():
        if not np.array_equal(first, this):
            raise DataError(f"{source}: branches {first_name!r} and {name!r} have different numbers of jets per entry")
    entry = np.repeat(np.arange(len(first), dtype=np.int64), first)
    return out, entry


# --------------------------------------------------------------------------------------------------------------
# writer


def write_jets_hdf5(path: str | os.PathLike, table: JetTable, attrs: Mapping[str, Any] | None = None) -> None:
    """Write ``table`` as a ``jets/`` group (``pt eta phi m E`` float32, ``event`` int64) to ``path``.

    The same layout as the simulator's files, so :func:`read_jets` reads it back. Not atomic by itself; the CLIs
    write to a temporary name and rename.
    """
    import h5py

    with h5py.File(path, "w") as handle:
        group = handle.create_group("jets")
        for name in ("pt", "eta", "phi", "m", "E"):
            group.create_dataset(name, data=getattr(table, name).astype(np.float32))
            group[name].attrs["unit"] = UNITS[name]
        group.create_dataset("event", data=table.event.astype(np.int64))
        for key, value in (attrs or {}).items():
            handle.attrs[key] = value
