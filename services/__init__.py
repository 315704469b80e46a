"""Services built on the reco core library (imports reco, never the reverse)."""
