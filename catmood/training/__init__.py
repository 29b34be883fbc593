"""Training stage: model factory, pretrained weights, recipes, the train/validate loop, evaluation, plots."""
