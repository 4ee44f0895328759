"""One folder per method: ``model.py`` (plain nn.Module) + ``module.py`` (thin LightningModule)."""
