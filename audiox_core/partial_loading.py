"""Partial ("low-VRAM") loading: some layers of a network sit on the compute device, the others stay
on the offload device and have their weights copied to the compute device for each call.

This is ComfyUI's ``--lowvram`` behaviour, with ComfyUI's own protocol, so that ComfyUI's
``ModelPatcher`` can load our networks partially (``comfy.ops`` layers speak it):

* a layer that can run with its weights elsewhere has ``comfy_cast_weights`` (False while its
  weights are on the compute device) and the lists ``weight_function`` / ``bias_function``
  (functions applied to the copied ``weight`` / ``bias`` before use: ComfyUI puts its LoRA
  patches there for layers it did not load);
* the loader sets ``comfy_cast_weights = True`` on the layers it leaves on the offload device.

:func:`make_castable` gives that protocol to every layer of a network that holds parameters and
has no parameters in sub-layers (ComfyUI's list of loadable modules) by switching its class to a
subclass with :class:`CastWeights` first (parameter names, state-dict keys and results unchanged).
When the flag is set, the layer's own parameters and buffers are swapped for copies on the device
of its first tensor input for the duration of its ``forward``.

Tensors a loader never lists (buffers of parameter-less modules such as rotary tables, parameters of
a module that also has parameterised children) are moved whole to the compute device by
:func:`complete_partial_load`, to be called after any partial load; they are small.

:func:`load_partially` is the same policy without ComfyUI (largest layers first until a byte
budget is spent), for the stand-alone runner, the benchmarks and the tests.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Union

import torch
from torch import nn

__all__ = ["CastWeights", "make_castable", "is_castable", "castable_layers", "complete_partial_load",
           "load_partially", "unload", "layer_bytes"]

#: attribute set on the root module by :func:`make_castable`
CASTABLE_MARK = "_audiox_castable"


class CastWeights:
    """Mixin (first base) that runs a layer with its weights on another device when
    ``comfy_cast_weights`` is set.  ``cast_dtype``: the dtype floating tensors are copied in
    (None: the stored dtype; set it to store weights in one dtype and compute in another)."""

    comfy_cast_weights = False
    cast_dtype: Optional[torch.dtype] = None

    def forward(self, *args, **kwargs):
        if not self.comfy_cast_weights:
            return super().forward(*args, **kwargs)
        device = _input_device(args, kwargs)
        if device is None:
            raise RuntimeError(f"{type(self).__name__}: a layer left on the offload device needs a tensor input "
                               "to know where to run")
        with _own_tensors_on(self, device):
            return super().forward(*args, **kwargs)


def _input_device(args, kwargs) -> Optional[torch.device]:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    return None


def _copied(layer: nn.Module, name: str, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    dtype = layer.cast_dtype if (layer.cast_dtype is not None and tensor.is_floating_point()) else tensor.dtype
    out = tensor.to(device=device, dtype=dtype, non_blocking=True)
    functions = {"weight": getattr(layer, "weight_function", ()), "bias": getattr(layer, "bias_function", ())}
    for function in functions.get(name, ()):
        out = function(out)
    return out


@contextlib.contextmanager
def _own_tensors_on(layer: nn.Module, device: torch.device) -> Iterator[None]:
    """Swap ``layer``'s own parameters and buffers for copies on ``device`` for the block."""
    saved = []
    try:
        for table in (layer._parameters, layer._buffers):
            for name, tensor in list(table.items()):
                if tensor is not None:
                    saved.append((table, name, tensor))
                    table[name] = _copied(layer, name, tensor, device)
        yield
    finally:
        for table, name, tensor in saved:
            table[name] = tensor


_CLASSES: dict[type, type] = {}


def _castable_class(cls: type) -> type:
    if issubclass(cls, CastWeights):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(cls.__name__, (CastWeights, cls), {"__module__": cls.__module__,
                                                               "__qualname__": cls.__qualname__})
    return _CLASSES[cls]


def _is_loadable_layer(module: nn.Module) -> bool:
    """ComfyUI's rule for the modules it loads one by one: own parameters, none in sub-modules."""
    own = dict(module.named_parameters(recurse=False))
    return bool(own) and all(name in own for name, _ in module.named_parameters())


def make_castable(module: nn.Module) -> int:
    """Give every loadable layer of ``module`` the cast-weights protocol (in place, idempotent);
    returns the number of layers that have it."""
    count = 0
    for layer in module.modules():
        if _is_loadable_layer(layer):
            if not isinstance(layer, CastWeights):
                layer.__class__ = _castable_class(type(layer))
                layer.weight_function, layer.bias_function = [], []
            count += 1
    setattr(module, CASTABLE_MARK, True)
    return count


def is_castable(module: nn.Module) -> bool:
    """Whether :func:`make_castable` was applied to ``module`` (so it may be loaded partially)."""
    return bool(getattr(module, CASTABLE_MARK, False))


def castable_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, CastWeights)]


def layer_bytes(layer: nn.Module) -> int:
    """Bytes of a layer's own parameters and buffers."""
    return sum(t.nelement() * t.element_size() for t in (*layer._parameters.values(), *layer._buffers.values())
               if t is not None)


def _move_own(module: nn.Module, device: torch.device) -> None:
    for table in (module._parameters, module._buffers):
        for name, tensor in table.items():
            if tensor is None or tensor.device == device:
                continue
            moved = tensor.detach().to(device)
            if not isinstance(tensor, nn.Parameter):
                table[name] = moved
            elif torch._has_compatible_shallow_copy_type(tensor, moved):  # as Module._apply does
                tensor.data = moved
            else:
                table[name] = nn.Parameter(moved, requires_grad=tensor.requires_grad)


def complete_partial_load(module: nn.Module, device: Union[str, torch.device]) -> int:
    """Move every tensor of ``module`` that is not in a layer flagged ``comfy_cast_weights`` to
    ``device`` (after a partial load: the small tensors a loader does not list).  Returns the
    number of flagged layers (0: the module is wholly on ``device``)."""
    device = torch.device(device)
    flagged = 0
    for layer in module.modules():
        if getattr(layer, "comfy_cast_weights", False):
            flagged += 1
        else:
            _move_own(layer, device)
    return flagged


def load_partially(module: nn.Module, device: Union[str, torch.device], budget_bytes: int) -> dict:
    """Load a :func:`make_castable` module onto ``device`` within about ``budget_bytes``: its layers
    in decreasing size while they fit, the others flagged to run from where they are (ComfyUI's
    order).  The small tensors of :func:`complete_partial_load` come on top.  Returns
    ``{"loaded_bytes", "layers_on_device", "layers_cast"}``."""
    if not is_castable(module):
        raise ValueError("load_partially needs a module prepared with make_castable")
    device = torch.device(device)
    loaded, on_device, cast = 0, 0, 0
    for _name, layer in sorted(castable_layers(module), key=lambda item: -layer_bytes(item[1])):
        size = layer_bytes(layer)
        if loaded + size < budget_bytes:
            layer.comfy_cast_weights = False
            _move_own(layer, device)
            loaded += size
            on_device += 1
        else:
            layer.comfy_cast_weights = True
            cast += 1
    complete_partial_load(module, device)
    return {"loaded_bytes": loaded, "layers_on_device": on_device, "layers_cast": cast}


def unload(module: nn.Module, device: Union[str, torch.device]) -> None:
    """Move ``module`` wholly to ``device`` and clear the cast flags (the opposite of
    :func:`load_partially`)."""
    module.to(device)
    for _name, layer in castable_layers(module):
        layer.comfy_cast_weights = False
