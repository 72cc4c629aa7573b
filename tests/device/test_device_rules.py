"""Each Core ML rule for updatable models, broken on purpose in an otherwise good spec."""

from __future__ import annotations

import numpy as np
import pytest
from device_builders import classifier_spec, pipeline_spec, regressor_spec

from tandem.device.rules import RULES, check


def layer(spec, name):
    return [l for l in spec.neuralNetworkClassifier.layers if l.name == name][0]


def rules_of(spec):
    return {v.rule for v in check(spec)}


def test_good_specs_pass():
    assert check(classifier_spec()) == []
    assert check(classifier_spec(optimizer="adam", updatable=("dense0", "dense1", "head"))) == []
    assert check(pipeline_spec()[0]) == []
    assert check(regressor_spec()) == []


def _not_updatable(s):
    s.isUpdatable = False


def _old_version(s):
    s.specificationVersion = 3


def _no_updatable_layers(s):
    for l in s.neuralNetworkClassifier.layers:
        l.isUpdatable = False


def _updatable_relu(s):
    layer(s, "dense1.relu").isUpdatable = True


def _two_losses(s):
    up = s.neuralNetworkClassifier.updateParams
    up.lossLayers.add().CopyFrom(up.lossLayers[0])


def _ce_reads_logits(s):
    s.neuralNetworkClassifier.updateParams.lossLayers[0].categoricalCrossEntropyLossLayer.input = "head_out"


def _sigmoid_hard_on_path(s):
    # make dense1 updatable; its output then passes an activation without backprop to the head
    layer(s, "dense1").isUpdatable = True
    layer(s, "dense1.relu").activation.sigmoidHard.alpha = 0.2


def _unary_on_path(s):
    l = layer(s, "dense1.relu")
    layer(s, "dense1").isUpdatable = True
    l.ClearField("activation")
    l.unary.type = l.unary.ABS


def _no_target(s):
    del s.description.trainingInput[1]


def _no_optimizer(s):
    s.neuralNetworkClassifier.updateParams.ClearField("optimizer")


def _no_epochs(s):
    s.neuralNetworkClassifier.updateParams.ClearField("epochs")


def _fp16_head(s):
    w = layer(s, "head").innerProduct.weights
    values = np.asarray(w.floatValue, dtype="<f2")
    w.ClearField("floatValue")
    w.float16Value = values.tobytes()


def _quantized_head(s):
    w = layer(s, "head").innerProduct.weights
    w.quantization.numberOfBits = 8


def _default_outside(s):
    s.neuralNetworkClassifier.updateParams.optimizer.sgdOptimizer.learningRate.defaultValue = 10.0


CASES = {
    "updatable-flag": _not_updatable,
    "spec-version": _old_version,
    "updatable-network": _no_updatable_layers,
    "layer-types": _updatable_relu,
    "one-loss": _two_losses,
    "loss-input": _ce_reads_logits,
    "backprop-path": _sigmoid_hard_on_path,
    "target-input": _no_target,
    "optimizer": _no_optimizer,
    "epochs": _no_epochs,
    "float32-weights": _fp16_head,
    "defaults-allowed": _default_outside,
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule(rule):
    spec = classifier_spec()
    CASES[rule](spec)
    broken = check(spec)
    assert rule in {v.rule for v in broken}, broken
    assert all(v.rule in RULES for v in broken)


def _knn_pipeline():
    import release_shaped

    from tandem.device.knn import knn_pipeline
    from tandem.device.runtime import load_spec

    return load_spec(knn_pipeline(release_shaped.model(), 3).spec)


def _knn_k_outside(s):
    s.pipelineClassifier.pipeline.models[-1].kNearestNeighborsClassifier.numberOfNeighbors.defaultValue = 5000


def _knn_too_wide(s):
    s.pipelineClassifier.pipeline.models[-1].kNearestNeighborsClassifier.nearestNeighborsIndex.numberOfDimensions = 17


KNN_CASES = {"knn-index": _knn_k_outside, "knn-dimensions": _knn_too_wide}


def test_the_knn_personal_pipeline_passes_and_each_knn_rule_catches_its_break():
    assert check(_knn_pipeline()) == []
    for rule, breaks in KNN_CASES.items():
        spec = _knn_pipeline()
        breaks(spec)
        assert {v.rule for v in check(spec)} == {rule}, check(spec)
    spec = _knn_pipeline()
    spec.pipelineClassifier.pipeline.models[0].isUpdatable = True  # the embedding must stay frozen
    assert "pipeline-last-only" in rules_of(spec)


def test_every_rule_has_a_test():
    assert set(CASES) | set(KNN_CASES) | {"pipeline-last-only"} == set(RULES)


def test_unsupported_layer_on_path_and_quantized():
    s = classifier_spec()
    _unary_on_path(s)
    assert "backprop-path" in rules_of(s)
    s = classifier_spec()
    _quantized_head(s)
    assert "float32-weights" in rules_of(s)


def test_layers_before_first_updatable_do_not_matter():
    s = classifier_spec()
    layer(s, "dense0.relu").activation.sigmoidHard.alpha = 0.2  # before the updatable head: fine
    assert check(s) == []


def test_pipeline_only_last_model_updatable():
    spec, _ = pipeline_spec()
    spec.pipelineClassifier.pipeline.models[0].isUpdatable = True
    assert "pipeline-last-only" in rules_of(spec)
    spec, _ = pipeline_spec()
    spec.pipelineClassifier.pipeline.models[1].isUpdatable = False
    assert "updatable-flag" in rules_of(spec)


def test_regressor_mse_target():
    s = regressor_spec()
    s.neuralNetworkRegressor.updateParams.lossLayers[0].meanSquaredErrorLossLayer.target = "nope"
    assert "target-input" in rules_of(s)
    s = regressor_spec()
    s.neuralNetworkRegressor.updateParams.lossLayers[0].meanSquaredErrorLossLayer.input = "nope"
    assert "loss-input" in rules_of(s)
