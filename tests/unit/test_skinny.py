"""The batch's linear layers for a few rows (tui/engine/skinny.py): the same products,
rows in memory order, and only where and when they are asked for."""

from __future__ import annotations

import threading

import torch

from tui.engine import skinny


class Quantized(torch.nn.Linear):
    """Stands for a layer that only looks like nn.Linear (bitsandbytes' are subclasses)."""


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 96), torch.nn.Linear(96, 32, bias=False), Quantized(32, 8)
    )


def test_a_few_rows_give_the_same_products_in_row_order() -> None:
    plain, prepared = model(), model()
    skinny.prepare(prepared)
    assert type(prepared[0]) is not torch.nn.Linear and isinstance(prepared[0], torch.nn.Linear)
    assert type(prepared[2]) is Quantized  # a subclass is left alone
    for rows in (1, 2, 4, skinny.MAX_ROWS, skinny.MAX_ROWS + 1):
        x = torch.randn(rows, 1, 64)
        with torch.inference_mode(), skinny.rows():
            ours = prepared[0](x)
        theirs = plain[0](x)
        assert ours.shape == theirs.shape == (rows, 1, 96)
        assert ours.is_contiguous()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prepared(x), plain(x), rtol=1e-5, atol=1e-5)


def test_outside_the_block_and_in_other_threads_it_is_nn_linear_exactly() -> None:
    plain, prepared = model(), model()
    skinny.prepare(prepared)
    x = torch.randn(3, 1, 64)
    assert torch.equal(prepared(x), plain(x))  # not asked for: F.linear, bit for bit
    seen = []
    with skinny.rows():
        worker = threading.Thread(target=lambda: seen.append(prepared(x)))
        worker.start()
        worker.join()
    assert torch.equal(seen[0], plain(x))  # the block is this thread's only
