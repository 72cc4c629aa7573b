// TandemFeatures: the featurizer that interprets a release's feature_spec.json (see Package.swift).
// Entry point: `Featurizer(specData:)`, then `features(window:)` / `modelInput(window:)`.
// One file per feature operation under Ops/, each with the same name and version as its Python twin
// in tandem/contract/feature_ops/.
