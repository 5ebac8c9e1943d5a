"""The Dagster layer: thin glue that turns pipelines into assets (translator, assets), passes table
references between them (io_manager), and adds resources, schedules and sensors, partitions, the
dg component and the definitions loader. The only layer that imports Dagster."""
