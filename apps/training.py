"""Training: runs with filters, live overlaid curves, progress and ETA, checkpoints, models, start and stop."""

from bi_ide.dashboards.template import page
from bi_ide.dashboards.training import TrainingPage, training_state

page(TrainingPage(training=training_state()), title="Training", active="training").servable()
