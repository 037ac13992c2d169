"""Images in: IQA data sets (sources, readers, manifests), test-image selection,
degradations, the demo's photographs and the synthetic IQA set."""
