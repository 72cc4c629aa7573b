"""Q3: can coremltools build one updatable pipeline: embedding network -> updatable k-NN classifier?"""
import sys, time
t0 = time.time()
import numpy as np, torch
torch.set_num_threads(1)
import coremltools as ct
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder
from tandem.contract.features import CLASSES, FEATURE_NAMES
from tandem.training import model
print("coremltools", ct.__version__)

rng = np.random.default_rng(0)
net = model.Classifier(len(FEATURE_NAMES), len(CLASSES), [128], rng.normal(size=157), np.abs(rng.normal(size=157)) + 0.5)
w = model.export_weights(net)
n_f, dim = w["n_features"], w["layers"][0]["W"].shape[0]

# 1. the embedding network: standardize -> dense -> relu (the released network up to its last hidden layer)
b = NeuralNetworkBuilder(input_features=[("features", datatypes.Array(n_f))],
                         output_features=[("embedding", datatypes.Array(dim))], mode=None)
mean, std = w["mean"].astype(np.float64), w["std"].astype(np.float64)
b.add_batchnorm("standardize", n_f, (1 / std).astype(np.float32), (-mean / std).astype(np.float32),
                mean=np.zeros(n_f, np.float32), variance=np.ones(n_f, np.float32), input_name="features",
                output_name="standardized", epsilon=0.0)
L = w["layers"][0]
b.add_inner_product("body.0", W=L["W"], b=L["b"], input_channels=n_f, output_channels=dim, has_bias=True,
                    input_name="standardized", output_name="body.0")
b.add_activation("body.0.relu", "RELU", "body.0", "embedding")
emb_spec = b.spec
emb_spec.specificationVersion = 4

# 2. the updatable k-NN (Core ML's k-NN: squared Euclidean, linear or kd-tree index, uniform or 1/d weights)
kb = KNearestNeighborsClassifierBuilder(input_name="embedding", output_name="label", number_of_dimensions=dim,
                                        default_class_label="unknown", number_of_neighbors=3,
                                        weighting_scheme="uniform", index_type="linear")
kb.author = "Tandem"
kb.set_number_of_neighbors_with_bounds(3, allowed_range=(1, 10))
# optional seed samples: the server could ship class prototypes, the device then appends its own labels
# kb.add_samples(protos, labels)
knn_spec = kb.spec
print("knn isUpdatable:", knn_spec.isUpdatable, "trainingInput:", [f.name for f in knn_spec.description.trainingInput])

# 3. the pipeline classifier, updatable
p = ct.proto.Model_pb2.Model()
p.specificationVersion = ct._MINIMUM_UPDATABLE_SPEC_VERSION
p.isUpdatable = True
p.description.input.add().CopyFrom(emb_spec.description.input[0])
for o in knn_spec.description.output:
    p.description.output.add().CopyFrom(o)
p.description.predictedFeatureName = knn_spec.description.predictedFeatureName
if knn_spec.description.predictedProbabilitiesName:
    p.description.predictedProbabilitiesName = knn_spec.description.predictedProbabilitiesName
p.description.trainingInput.add().CopyFrom(emb_spec.description.input[0])  # the app feeds raw features
for f in knn_spec.description.trainingInput:
    if f.name != "embedding":
        p.description.trainingInput.add().CopyFrom(f)
p.pipelineClassifier.pipeline.models.add().CopyFrom(emb_spec)
p.pipelineClassifier.pipeline.models.add().CopyFrom(knn_spec)
print("pipeline outputs:", [o.name for o in p.description.output], "trainingInput:", [f.name for f in p.description.trainingInput])
ct.utils.save_spec(p, "/tmp/r19/out/har_embedding_knn.mlmodel")
print("saved", "/tmp/r19/out/har_embedding_knn.mlmodel")
try:
    m = ct.models.MLModel(p)   # compiles/validates via Core ML framework: macOS only
    print("MLModel ok")
except Exception as e:
    print("MLModel (compile/validate) not possible here:", type(e).__name__, str(e)[:200])

# 4. the repo's device runtime
from tandem.device.runtime import DeviceModel
try:
    dm = DeviceModel.load(p.SerializeToString())
    print("runtime kind", dm.kind, "classifier?", dm.is_classifier)
    print(dm.predict(rng.normal(size=(3, n_f))))
except Exception as e:
    print("device runtime:", type(e).__name__, e)
print(f"{time.time()-t0:.1f}s")
