from tandem.device.rules import check
from tandem.device.runtime import load_spec
spec = load_spec("/tmp/r19/out/har_embedding_knn.mlmodel")
for v in check(spec): print(v)
m = spec.pipelineClassifier.pipeline.models
print("stage updatable flags:", [x.isUpdatable for x in m], "knn k:", m[1].kNearestNeighborsClassifier.numberOfNeighbors)
