"""The options of the group analyses are declared once (smriflow.stats.options); every front-end agrees.

The interfaces' traits are derived from the declarations, and so are the options of ``smriflow stats roi``;
the workflow files cannot be derived, so this test compares them: each ``args`` entry that feeds a derived
trait has the declaration's type, default, choices and doc.
"""

from __future__ import annotations

import pytest

from smriflow.cli.main import get_parser
from smriflow.engine.loading import load_spec
from smriflow.engine.registry import packaged_workflows, resolve_interface
from smriflow.interfaces.qc import GroupIQMTable
from smriflow.interfaces.stats import ROIGLM
from smriflow.stats.options import ALPHA, CORRECTION, MISSING, QCRules, params_of
from smriflow.utils.params import Param


def declared_args() -> dict[tuple[str, str], tuple[object, Param]]:
    """(workflow, arg) -> (the YAML ArgSpec, the declaration of the input it feeds), for every packaged
    workflow node whose input is a declared parameter set with ``$arg``."""
    found = {}
    for stem, path in sorted(packaged_workflows().items()):
        loaded = load_spec(path)
        for node in loaded.spec.nodes.values():
            if node.interface is None:
                continue
            inputs = resolve_interface(node.interface)().inputs
            for key, value in node.params.items():
                param = inputs.trait(key).param if key in inputs.trait_names() else None
                if param is not None and isinstance(value, str) and value.startswith("$"):
                    found[stem, value[1:]] = (loaded.spec.args[value[1:]], param)
    return found


def test_the_yaml_args_equal_the_declarations():
    found = declared_args()
    # the test covers what it should: the ROI GLM's options and every QC threshold
    assert sorted(found) == sorted(
        [("roi_glm", name) for name in ("alpha", "correction", "missing")]
        + [("qc_group", name) for name in params_of(QCRules)]
    )
    for (stem, name), (arg, param) in found.items():
        expected = (param.type_name, param.default, list(param.choices) if param.choices else None, param.doc)
        assert (arg.type, arg.default, arg.choices, arg.doc) == expected, f"{stem}.yml: args.{name}"


def test_interface_traits_are_derived_from_the_declarations():
    roi = ROIGLM().inputs
    assert roi.trait("correction").trait_type.values == CORRECTION.choices
    assert (roi.correction, roi.missing, roi.alpha) == (CORRECTION.default, MISSING.default, ALPHA.default)
    assert roi.trait("missing").desc == MISSING.doc
    qc = GroupIQMTable().inputs
    for name, param in params_of(QCRules).items():
        assert getattr(qc, name) == param.default and qc.trait(name).desc == param.doc
    with pytest.raises(Exception, match="must be a floating point number > 0.0"):  # declared low=0, open
        qc.z_threshold = 0.0
    with pytest.raises(Exception, match="must be a floating point number >= 0.0"):
        qc.scale_floor = -0.1
    with pytest.raises(Exception, match="0.0 < a floating point number < 1.0"):
        roi.alpha = 1.0


def test_stats_roi_options_come_from_the_declarations():
    argv = ["stats", "roi", "--table", "t.tsv", "--participants", "p.tsv", "--formula", "{roi} ~ age"]
    args = get_parser().parse_args([*argv, "--predictor", "age", "--output-dir", "out"])
    assert (args.missing, args.correction, args.alpha) == (MISSING.default, CORRECTION.default, ALPHA.default)
    roi = get_parser()._subparsers._group_actions[0].choices["stats"]
    roi = roi._subparsers._group_actions[0].choices["roi"]
    choices = {action.dest: action.choices for action in roi._actions}
    assert (choices["missing"], choices["correction"]) == (MISSING.choices, CORRECTION.choices)


def test_qc_rules_check_their_declared_bounds():
    with pytest.raises(ValueError, match=r"^'z_threshold' must be positive\. 0 was provided\.$"):
        QCRules(z_threshold=0)
    with pytest.raises(ValueError, match=r"^'min_subjects' must be of type int\. 2\.5 was provided\.$"):
        QCRules(min_subjects=2.5)
