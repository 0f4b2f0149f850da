"""How models are trained, evaluated and measured: the LightningModule, data modules, callbacks and the `seqmix` CLI."""
