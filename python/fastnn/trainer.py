class Trainer: pass
