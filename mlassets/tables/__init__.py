"""Tables computed from the stored records, as plain code (Spark, pandas, pymongo; no Dagster): the assets and the
Spark scripts that Pipes submits (mlassets/pipes/scripts) run the same functions."""
