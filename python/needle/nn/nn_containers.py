"""Module containers (``needle.nn``): ModuleList and ModuleDict, as PyTorch's. Their items
are attributes, so ``parameters()`` and ``state_dict()`` find them (keys "blocks.0.weight",
"heads.q.weight", ...)."""
from .nn_basic import Module

__all__ = ["ModuleList", "ModuleDict"]


def _check_module(container: str, m) -> None:
    if not isinstance(m, Module):
        raise TypeError(f"[{container}] holds Modules, got {type(m).__name__}")


class ModuleList(Module):
    """A list of sub-modules, indexable and iterable, as torch.nn.ModuleList. The items are
    attributes "0", "1", ... so their parameters and state_dict keys are found (and named
    "<list>.0.weight", as PyTorch's)."""

    def __init__(self, modules=None):
        super().__init__()
        self._length = 0
        if modules is not None:
            self.extend(modules)

    def _items(self) -> list:
        return [self.__dict__[str(i)] for i in range(self._length)]

    def _reset(self, items) -> None:
        for i in range(self._length):
            del self.__dict__[str(i)]
        for m in items:
            _check_module("ModuleList", m)
        for i, m in enumerate(items):
            self.__dict__[str(i)] = m
        self._length = len(items)

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        return iter(self._items())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(self._items()[index])
        return self._items()[index]

    def __setitem__(self, index: int, module) -> None:
        items = self._items()
        items[index] = module
        self._reset(items)

    def append(self, module):
        self._reset(self._items() + [module])
        return self

    def extend(self, modules):
        self._reset(self._items() + list(modules))
        return self

    def insert(self, index: int, module) -> None:
        items = self._items()
        items.insert(index, module)
        self._reset(items)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("[ModuleList] has no forward: call its modules")


class ModuleDict(Module):
    """A dict of named sub-modules in insertion order, as torch.nn.ModuleDict; each is an
    attribute of its key, so state_dict keys read "<dict>.<key>.weight"."""

    def __init__(self, modules=None):
        super().__init__()
        self._keys = []
        if modules is not None:
            self.update(modules)

    def _check_key(self, key) -> None:
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            raise ValueError(f"[ModuleDict] keys must be identifiers without a leading _, got {key!r}")
        if key not in self._keys and (key in self.__dict__ or hasattr(type(self), key)):
            raise ValueError(f"[ModuleDict] key {key!r} would shadow a ModuleDict attribute")

    def __setitem__(self, key: str, module) -> None:
        self._check_key(key)
        _check_module("ModuleDict", module)
        if key not in self._keys:
            self._keys.append(key)
        self.__dict__[key] = module

    def __getitem__(self, key: str):
        if key not in self._keys:
            raise KeyError(key)
        return self.__dict__[key]

    def __delitem__(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(key)
        self._keys.remove(key)
        del self.__dict__[key]

    def __contains__(self, key) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self):
        return iter(list(self._keys))

    def keys(self):
        return list(self._keys)

    def values(self):
        return [self.__dict__[k] for k in self._keys]

    def items(self):
        return [(k, self.__dict__[k]) for k in self._keys]

    def update(self, modules) -> None:
        pairs = modules.items() if isinstance(modules, dict) else modules
        for key, module in pairs:
            self[key] = module

    def forward(self, *args, **kwargs):
        raise NotImplementedError("[ModuleDict] has no forward: call its modules")
