"""Min-max scaling and standardization with scikit-learn's numbers, for numpy arrays and torch tensors.

The estimator contract is scikit-learn's: `__init__` stores hyperparameters, `fit` resets and
learns, learned attributes end in `_`, `transform` before `fit` raises `NotFittedError`.
Statistics are computed in float64 and kept as numpy arrays; output is float32 unless the
input was float64, and of the same kind (and device) as the input.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import numpy as np
import torch

Axis = Literal["feature", "channel", "global"]
ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)
_AXES = ("feature", "channel", "global")


class NotFittedError(ValueError, AttributeError):
    """A scaler was used before `fit`."""


def _to_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(f"Expected real numbers, got a tensor of dtype {x.dtype}; scale the real and imaginary parts as features of their own.")
        return x
    if not isinstance(x, np.ndarray):
        raise TypeError(f"Expected a numpy array or a torch tensor, got {type(x).__name__}.")
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"Expected numeric data, got an array of dtype {x.dtype}.")
    if np.iscomplexobj(x):  # scaling would drop the imaginary part
        raise ValueError(f"Expected real numbers, got an array of dtype {x.dtype}; scale the real and imaginary parts as features of their own.")
    if any(stride < 0 for stride in x.strides):  # a reversed view: torch takes none
        x = x.copy()
    if x.flags.writeable:
        return torch.from_numpy(x)
    with warnings.catch_warnings():  # a read-only array (a cache entry, mapped): torch warns it could be written, nothing here writes it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x)


def _like_input(result: torch.Tensor, original: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    return result.numpy() if isinstance(original, np.ndarray) else result


def _output_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _Scaler(ABC):
    """Shared machinery: which dimensions are reduced, validation, state (de)serialisation."""

    _learned: tuple[str, ...] = ()

    def __init__(self, axis: Axis = "feature") -> None:
        if axis not in _AXES:
            raise ValueError(f"The 'axis' parameter of {type(self).__name__} must be one of {_AXES}. Got {axis!r} instead.")
        self.axis = axis

    # -- shapes -------------------------------------------------------------------------
    def _reduce_dims(self, x: torch.Tensor) -> tuple[int, ...]:
        if self.axis == "global":
            return tuple(range(x.ndim))
        if x.ndim < 2:
            raise ValueError(
                f"{type(self).__name__}(axis={self.axis!r}) needs at least 2-D input (samples first), "
                f"got shape {tuple(x.shape)}. Reshape 1-D data with x.reshape(-1, 1)."
            )
        if self.axis == "feature":
            return (0,)
        return (0, *range(2, x.ndim))

    def _stat_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        if self.axis == "global":
            return ()
        if self.axis == "feature":
            return tuple(x.shape[1:])
        return (x.shape[1],)

    def _broadcast(self, stat: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        tensor = torch.as_tensor(stat, dtype=torch.float64, device=x.device)
        if self.axis == "channel":
            tensor = tensor.reshape(1, -1, *([1] * (x.ndim - 2)))
        return tensor

    def _unit_name(self) -> str:
        return {"feature": "feature", "channel": "channel", "global": "value"}[self.axis]

    # -- validation ---------------------------------------------------------------------
    def _validate(self, x: torch.Tensor, fitting: bool) -> None:
        if x.numel() == 0:
            raise ValueError(f"{type(self).__name__} got an empty array of shape {tuple(x.shape)}.")
        if x.is_floating_point() or x.is_complex():
            bad = ~torch.isfinite(x)
            if bool(bad.any()):
                index = tuple(int(i) for i in torch.nonzero(bad)[0])
                kind = "NaN" if bool(torch.isnan(x[index])) else "inf"
                where = self._where(index)
                raise ValueError(f"{type(self).__name__} found {kind} at index {index} ({where}); clean the data first.")
        if not fitting:
            self._check_fitted()
            expected = self.n_features_in_
            got = self._stat_shape(x)
            if tuple(expected) != got:
                unit = self._unit_name()
                raise ValueError(
                    f"X has {unit} shape {got}, but {type(self).__name__} was fitted with {unit} shape {tuple(expected)}."
                )

    def _where(self, index: tuple[int, ...]) -> str:
        if self.axis == "feature" and len(index) > 1:
            return f"feature {index[1:] if len(index) > 2 else index[1]}"
        if self.axis == "channel" and len(index) > 1:
            return f"channel {index[1]}"
        return f"sample {index[0]}"

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")

    def _reset(self) -> None:
        for name in (*self._learned, "n_features_in_", "n_samples_seen_"):
            self.__dict__.pop(name, None)

    # -- public API ---------------------------------------------------------------------
    def fit(self, x: np.ndarray | torch.Tensor, y: Any = None) -> "_Scaler":
        """Learn the statistics of `x` (the training split)."""
        self._reset()
        tensor = _to_tensor(x)
        self._validate(tensor, fitting=True)
        dims = self._reduce_dims(tensor)
        self._fit_stats(tensor, dims)
        self.n_features_in_ = self._stat_shape(tensor)
        self.n_samples_seen_ = int(np.prod([tensor.shape[d] for d in dims]))
        return self

    def fit_transform(self, x: ArrayLike, y: Any = None) -> ArrayLike:
        return self.fit(x).transform(x)

    def transform(self, x: ArrayLike) -> ArrayLike:
        tensor = _to_tensor(x)
        self._validate(tensor, fitting=False)
        table = self.lookup_table(tensor) if tensor.ndim and tensor.shape[0] >= _LEVELS else None  # fewer samples than levels: computing is cheaper
        out = _look_up(table, tensor) if table is not None else _map_in_chunks(self._forward, tensor)
        return _like_input(out, x)

    def inverse_transform(self, x: ArrayLike) -> ArrayLike:
        tensor = _to_tensor(x)
        self._validate(tensor, fitting=False)
        return _like_input(_map_in_chunks(self._backward, tensor), x)

    def lookup_table(self, x: np.ndarray | torch.Tensor) -> torch.Tensor | None:
        """For 8-bit input (bool, uint8, int8): `transform` of every value a unit can hold, as a
        float32 table indexed by the values' bit patterns, of shape (256, *units) where the units'
        shape broadcasts over a sample (`(C, 1, 1)` per channel of images, a sample's shape per
        feature, ones for global; see `look_up`); None for other dtypes. Looking values up gives
        the very bits computing them would (the same float64 arithmetic, done once per value
        instead of once per sample)."""
        x = _to_tensor(x)
        if x.dtype not in _EIGHT_BIT or x.ndim < 1:
            return None
        self._validate(x, fitting=False)
        levels = torch.arange(_LEVELS, dtype=torch.uint8, device=x.device)
        values = levels.view(torch.int8) if x.dtype == torch.int8 else levels.clamp(max=1) if x.dtype == torch.bool else levels
        grid = values.to(torch.float64).reshape(_LEVELS, *([1] * (x.ndim - 1)))
        table = self._forward(grid, x).to(torch.float32)
        return table.reshape(_LEVELS, *table.shape[1:], *([1] * (x.ndim - table.ndim))).contiguous()

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and learned statistics as plain Python values (JSON-serialisable)."""
        self._check_fitted()
        state = {"class": type(self).__name__, "params": self.get_params()}
        state["n_features_in_"] = list(self.n_features_in_)
        state["n_samples_seen_"] = self.n_samples_seen_
        for name in self._learned:
            state[name] = np.asarray(getattr(self, name)).tolist()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> "_Scaler":
        if state.get("class") != type(self).__name__:
            raise ValueError(f"State of {state.get('class')!r} cannot be loaded into {type(self).__name__}.")
        self._reset()
        self.__init__(**state["params"])
        self.n_features_in_ = tuple(state["n_features_in_"])
        self.n_samples_seen_ = int(state["n_samples_seen_"])
        for name in self._learned:
            value = np.asarray(state[name], dtype=np.float64)
            if value.shape != self.n_features_in_:
                raise ValueError(f"State of {type(self).__name__}: {name!r} has shape {value.shape} but n_features_in_ says {self.n_features_in_}.")
            setattr(self, name, value)
        return self

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments, as given."""

    @abstractmethod
    def _fit_stats(self, data: torch.Tensor, dims: tuple[int, ...]) -> None:
        """Learn the statistics from `data` (any real dtype), reducing over `dims`."""

    @abstractmethod
    def _forward(self, data: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Scale float64 `data`; `like` is the caller's tensor (for device and shape)."""

    @abstractmethod
    def _backward(self, data: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Undo `_forward`."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


_EIGHT_BIT = (torch.uint8, torch.int8, torch.bool)
_UNREDUCIBLE = tuple(getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name))
_LEVELS = 256  # values an 8-bit unit can hold (bool uses the first two)
_INT64_LIMIT = 2**63
_CHUNK_ELEMENTS = 1 << 20  # values per float64 working chunk: 8 MiB, so temporaries stay in cache


def _row_chunks(x: torch.Tensor) -> Iterator[slice]:
    """Slices of `x`'s first dimension holding about `_CHUNK_ELEMENTS` values each."""
    rows = max(1, _CHUNK_ELEMENTS // max(1, math.prod(x.shape[1:])))
    for start in range(0, x.shape[0], rows):
        yield slice(start, start + rows)


def _map_in_chunks(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`function` of `x` in float64, written into an output of `_output_dtype`, a chunk of samples at
    a time (elementwise, so the same bits as one pass, without float64 copies of the whole input)."""
    if x.ndim == 0:
        return function(x.to(torch.float64), x).to(_output_dtype(x))
    out = torch.empty(x.shape, dtype=_output_dtype(x), device=x.device)
    for rows in _row_chunks(x):
        out[rows] = function(x[rows].to(torch.float64), x)
    return out


def look_up(table: ArrayLike, x: ArrayLike) -> ArrayLike:
    """`table[value]` for every value of 8-bit `x` (samples first), indexed by its bit pattern,
    at the value's position in its sample; `table` is (256, *units), its units broadcasting over
    a sample (see `_Scaler.lookup_table`). Of the same kind (and device) as `x`."""
    table_tensor, tensor = _to_tensor(table), _to_tensor(x)
    return _like_input(_look_up(table_tensor.to(tensor.device), tensor), x)


def _look_up(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape, dtype=table.dtype, device=x.device)
    if x.numel() == 0:
        return out
    codes = x.view(torch.uint8)
    every_value = table.expand(_LEVELS, *x.shape[1:])  # a view: the table is never copied out per value
    for rows in _row_chunks(codes):
        torch.gather(every_value, 0, codes[rows].long(), out=out[rows])
    return out


def _exact_moments(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and population variance of integer `x` of at most 16 bits over `dims` (which hold the
    sample dimension), each rounded once from exact integer sums (from a histogram per channel for
    8-bit channels or globals); None for other dtypes. Exact sums make the statistics independent
    of summation order and chunking."""
    if x.is_floating_point() or x.element_size() > 2:
        return None
    values = x.view(torch.uint8) if x.dtype == torch.bool else x
    kept = [d for d in range(x.ndim) if d not in dims]
    shape = tuple(x.shape[d] for d in kept)
    n = int(np.prod([x.shape[d] for d in dims]))
    if x.element_size() == 1 and int(np.prod(shape)) <= 16:
        offset = 128 if x.dtype == torch.int8 else 0
        levels = torch.arange(_LEVELS, dtype=torch.int64, device=x.device) - offset
        units = values.movedim(kept, list(range(len(kept)))).reshape(int(np.prod(shape)), -1)
        if offset:
            units = units.to(torch.int16) + offset
        counts = torch.stack([torch.bincount(unit, minlength=_LEVELS) for unit in units])
        exact_sums, exact_squares = (counts * levels).sum(1).tolist(), (counts * levels * levels).sum(1).tolist()
    else:
        partials = []  # int64 (sums, squares), each ended before it could overflow, added exactly at the end
        sums, squares, pending = torch.zeros(shape, dtype=torch.int64, device=x.device), torch.zeros(shape, dtype=torch.int64, device=x.device), 0
        per_row = n // max(1, x.shape[0])  # values per unit in one sample
        for rows in _row_chunks(values):
            chunk = values[rows].to(torch.int64)
            if (pending + chunk.shape[0] * per_row) * 2**32 >= _INT64_LIMIT:  # squares of 16-bit values: 2**32 each at most
                partials.append((sums, squares))
                sums, squares, pending = torch.zeros_like(sums), torch.zeros_like(squares), 0
            sums += chunk.sum(dim=dims)
            squares += (chunk * chunk).sum(dim=dims)
            pending += chunk.shape[0] * per_row
        partials.append((sums, squares))
        exact_sums = [sum(unit) for unit in zip(*(partial.reshape(-1).tolist() for partial, _ in partials))]
        exact_squares = [sum(unit) for unit in zip(*(partial.reshape(-1).tolist() for _, partial in partials))]
    mean = np.array([s / n for s in exact_sums], dtype=np.float64).reshape(shape)
    var = np.array([(n * q - s * s) / (n * n) for s, q in zip(exact_sums, exact_squares)], dtype=np.float64).reshape(shape)
    return mean, var


def _constant_mask(var: np.ndarray, mean: np.ndarray, n_samples: int) -> np.ndarray:
    """scikit-learn's test for features whose variance is only floating-point noise."""
    eps = np.finfo(np.float64).eps
    upper_bound = n_samples * eps * var + (n_samples * mean * eps) ** 2
    return var <= upper_bound


def _handle_zeros_in_scale(scale: np.ndarray, constant_mask: np.ndarray | None = None) -> np.ndarray:
    """Scale 1 for (near-)constant features, as scikit-learn does, so no NaN or inf is produced."""
    scale = np.array(scale, dtype=np.float64, copy=True)
    if constant_mask is None:
        constant_mask = scale < 10 * np.finfo(np.float64).eps
    scale[constant_mask] = 1.0
    return scale


def _float_moments(x: torch.Tensor, dims: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean, then the mean squared deviation from it (two passes, as scikit-learn does), in float64,
    a chunk of samples at a time."""
    keep = [1 if d in dims else size for d, size in enumerate(x.shape)]
    total = torch.zeros(keep, dtype=torch.float64, device=x.device)
    for rows in _row_chunks(x):
        total += x[rows].to(torch.float64).sum(dim=dims, keepdim=True)
    mean = total / n
    deviations = torch.zeros_like(total)
    for rows in _row_chunks(x):
        deviations += ((x[rows].to(torch.float64) - mean) ** 2).sum(dim=dims, keepdim=True)
    shape = [x.shape[d] for d in range(x.ndim) if d not in dims]
    return mean.reshape(shape).cpu().numpy(), (deviations / n).reshape(shape).cpu().numpy()


class StandardScaler(_Scaler):
    """Standardize to mean 0 and standard deviation 1 (population std, like scikit-learn)."""

    _learned = ("mean_", "var_", "scale_")

    def __init__(self, with_mean: bool = True, with_std: bool = True, axis: Axis = "feature") -> None:
        super().__init__(axis)
        self.with_mean = with_mean
        self.with_std = with_std

    def get_params(self) -> dict[str, Any]:
        return {"with_mean": self.with_mean, "with_std": self.with_std, "axis": self.axis}

    def _fit_stats(self, data: torch.Tensor, dims: tuple[int, ...]) -> None:
        if data.ndim == 0:  # one value (axis="global"): a sample of one
            data, dims = data.reshape(1), (0,)
        n = int(np.prod([data.shape[d] for d in dims]))
        moments = _exact_moments(data, dims)
        mean_np, var_np = moments if moments is not None else _float_moments(data, dims, n)
        self.mean_ = mean_np if self.with_mean else np.zeros_like(mean_np)
        self.var_ = var_np
        if self.with_std:
            self.scale_ = _handle_zeros_in_scale(np.sqrt(var_np), _constant_mask(var_np, mean_np, n))
        else:
            self.scale_ = np.ones_like(var_np)

    def _forward(self, data: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return (data - self._broadcast(self.mean_, like)) / self._broadcast(self.scale_, like)

    def _backward(self, data: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return data * self._broadcast(self.scale_, like) + self._broadcast(self.mean_, like)


class MinMaxScaler(_Scaler):
    """Rescale each feature (or channel, or everything) to `feature_range`, like scikit-learn."""

    _learned = ("data_min_", "data_max_", "data_range_", "scale_", "min_")

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0), axis: Axis = "feature") -> None:
        super().__init__(axis)
        low, high = (float(v) for v in feature_range)
        if not low < high:
            raise ValueError(
                f"The 'feature_range' parameter of MinMaxScaler must have minimum < maximum. Got {tuple(feature_range)!r} instead."
            )
        self.feature_range = (low, high)

    def get_params(self) -> dict[str, Any]:
        return {"feature_range": list(self.feature_range), "axis": self.axis}

    def _fit_stats(self, data: torch.Tensor, dims: tuple[int, ...]) -> None:
        values = data.view(torch.uint8) if data.dtype == torch.bool else data
        if values.dtype in _UNREDUCIBLE:  # torch has no min or max of these; float64 keeps their order
            values = values.to(torch.float64)
        data_min = torch.amin(values, dim=dims).to(torch.float64).cpu().numpy()
        data_max = torch.amax(values, dim=dims).to(torch.float64).cpu().numpy()
        low, high = self.feature_range
        self.data_min_ = data_min
        self.data_max_ = data_max
        self.data_range_ = data_max - data_min
        self.scale_ = (high - low) / _handle_zeros_in_scale(self.data_range_)
        self.min_ = low - data_min * self.scale_

    def _forward(self, data: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return data * self._broadcast(self.scale_, like) + self._broadcast(self.min_, like)

    def _backward(self, data: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return (data - self._broadcast(self.min_, like)) / self._broadcast(self.scale_, like)
