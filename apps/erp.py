"""ERP: KPI cards, sales trend and forecast, receivables, stock alerts, ABC classes; an Import tab with the validation report."""

from bi_ide.dashboards.erp import ErpPage, erp_state
from bi_ide.dashboards.template import page

page(ErpPage(erp=erp_state()), title="ERP", active="erp").servable()
