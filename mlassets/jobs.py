"""Jobs over the asset graph."""

from dagster import AssetSelection, define_asset_job

main_job = define_asset_job(
    "main_job",
    selection=AssetSelection.all(),
    description="Every asset of every group, on the environment's data (the README's main job).",
)
