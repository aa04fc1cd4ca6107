"""ERP analytics: import, reports, forecasts and the weekly predictive report."""
