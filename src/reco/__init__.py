"""reco: the core library of reco-articles."""
