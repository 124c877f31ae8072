"""Monitoring as code: the Grafana dashboard and Prometheus alert rules for the bridge's KPIs.

The KPI thresholds come from :data:`aibridge.ops.kpis.units.DEFAULT_THRESHOLDS`, the table
``check-kpis`` judges with, so a dashboard colour, an alert and a ``check-kpis`` verdict agree.
"""
