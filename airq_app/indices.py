"""The public path of the national sub-index that callers outside airq use: `airq_app.indices.sub_index`. Its home,
with the tables and the conventions, is `airq_app.domain.indices`."""

from airq_app.domain.indices import sub_index

__all__ = ["sub_index"]
