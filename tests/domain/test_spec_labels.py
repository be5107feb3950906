"""Job labels (what `gpufleet usage --by label:KEY` groups by): forms accepted, bad ones named."""

from __future__ import annotations

import pytest

from gpufleet.domain import ValidationError
from gpufleet.domain.spec import build_spec, spec_from_dict, spec_to_dict


@pytest.mark.parametrize("value", ["purpose=dev,project=asr", ["purpose=dev", "project=asr"],
                                   {"purpose": "dev", "project": "asr"}])
def test_label_forms_and_round_trip(value):
    spec = build_spec({"command": ["true"], "label": value})
    assert dict(spec.labels) == {"purpose": "dev", "project": "asr"}
    assert dict(spec_from_dict(spec_to_dict(spec)).labels) == {"purpose": "dev", "project": "asr"}
    assert dict(build_spec({"command": ["true"], "labels": value}).labels) == dict(spec.labels)  # alias


@pytest.mark.parametrize("value", ["purpose", "a b=1", "=x", "k=" + "v" * 129, "k=a\nb", 7,
                                   ",".join(f"k{i}=v" for i in range(33))])
def test_bad_labels_name_the_field(value):
    with pytest.raises(ValidationError) as e:
        build_spec({"command": ["true"], "label": value})
    assert e.value.field == "label"


def test_no_labels_by_default():
    assert dict(build_spec({"command": ["true"]}).labels) == {}
