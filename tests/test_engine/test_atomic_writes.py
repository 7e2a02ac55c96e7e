"""AtomicLocalBackend (checkpoints and ``last_checkpoint``): the final path holds the old
file or the whole new one, never a part, whenever the writing process dies."""
import os

import pytest

from ssl_det.utils import checkpoint as checkpoint_module
from ssl_det.utils.checkpoint import AtomicLocalBackend


class Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


def test_the_final_path_never_holds_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / 'iter_2.pth'
    target.write_bytes(b'old checkpoint')
    new = os.urandom(1 << 20)
    seen = []
    real_fsync = os.fsync

    def fsync(fd):  # while the new bytes are on their way to the disk
        seen.append(target.read_bytes())
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint_module.os, 'fsync', fsync)
    AtomicLocalBackend().put(new, target)
    assert seen and seen[0] == b'old checkpoint'  # written elsewhere, not in place
    assert target.read_bytes() == new
    assert [p.name for p in tmp_path.iterdir()] == ['iter_2.pth']  # no temporary left


def test_a_death_before_the_rename_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'last_checkpoint'
    target.write_text('work_dirs/run/iter_1.pth')

    def die(src, dst):
        raise Killed()

    monkeypatch.setattr(checkpoint_module.os, 'replace', die)
    with pytest.raises(Killed):
        AtomicLocalBackend().put_text('work_dirs/run/iter_2.pth', target)
    assert target.read_text() == 'work_dirs/run/iter_1.pth'
    assert [p.name for p in tmp_path.iterdir()] == ['last_checkpoint']
