"""`gpufleet submit --image/--mount/--pull`: bad container input exits 2 naming the field, before
any server is asked."""

import pytest

from tests.cli.test_cli_bad_input import one_error_line
from tests.cli.test_cli_errors import run


@pytest.mark.parametrize("args,field", [
    (["submit", "--image", "Not A/Valid:image", "--", "true"], "image"),
    (["submit", "--image", "MyOrg/img:1", "--", "true"], "image"),
    (["submit", "--image", "busybox", "--mount", "relative:/data", "--", "true"], "mounts"),
    (["submit", "--image", "busybox", "--mount", "/a:/b:rx", "--", "true"], "mounts"),
    (["submit", "--mount", "/a:/b", "--", "true"], "mounts"),
    (["submit", "--image", "busybox", "--pull", "sometimes", "--", "true"], "pull"),
])
def test_bad_container_input_exits_2_naming_the_field(args, field):
    one_error_line(run(*args), field)


def test_good_container_input_gets_as_far_as_the_server():
    r = run("submit", "--image", "nvcr.io/nvidia/pytorch:24.05-py3", "--mount", "/data:/data:ro",
            "--pull", "never", "--", "true")
    assert r.returncode == 1 and "cannot reach gpufleet" in r.stderr, r.stderr
