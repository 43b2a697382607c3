"""The public path of the US EPA AQI functions that callers outside airq use: `airq_app.aqi.us_aqi` and
`airq_app.aqi.nowcast`. Their home, with the tables and the rules, is `airq_app.domain.aqi`."""

from airq_app.domain.aqi import nowcast, us_aqi

__all__ = ["nowcast", "us_aqi"]
