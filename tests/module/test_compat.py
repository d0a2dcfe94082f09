"""Fails loudly if a Synapse upgrade changes what `cached` needs from a module's objects."""

from synapse.module_api import cached

from synapse_sferum.compat import module_clock


class _Cached:
    def __init__(self) -> None:
        self.server_name = "school.test"
        self.clock = module_clock(self.server_name)
        self.calls = 0

    @cached()
    async def double(self, x: int) -> int:
        self.calls += 1
        return 2 * x


async def test_cached_methods_work_with_the_module_clock() -> None:
    obj = _Cached()
    assert await obj.double(2) == 4
    assert await obj.double(2) == 4
    assert obj.calls == 1
    obj.double.invalidate((2,))
    assert await obj.double(2) == 4
    assert obj.calls == 2
