"""Monitoring inputs: which data files a path names, tables read in chunks (CSV, Parquet, the
input log), and streaming drift statistics."""
