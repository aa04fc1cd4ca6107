"""GPUs: every GPU of every worker live (utilisation, memory, temperature, power, clocks, throttle reasons) and their history."""

from bi_ide.dashboards.gpu import GpuPage, gpu_state
from bi_ide.dashboards.template import page

page(GpuPage(gpus=gpu_state()), title="GPUs", active="gpu").servable()
