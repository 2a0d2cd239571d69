"""Read and write lake tables with Spark, and summarise them for asset metadata."""

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from propensity_assets.metadata import sample_rows, time_range
from resources.lake import LakeResource


def read_table(spark: SparkSession, lake: LakeResource, table: str) -> DataFrame:
    return spark.read.parquet(str(lake.pull_table(table)))


def write_table(frame: DataFrame, lake: LakeResource, table: str) -> DataFrame:
    """Replace the table and return it read back, so later steps reuse the written data instead of recomputing."""
    with lake.replace(table) as staging:
        frame.write.mode("overwrite").parquet(str(staging))
    return frame.sparkSession.read.parquet(str(lake.path(table)))


def table_metadata(frame: DataFrame, time_column: str) -> dict:
    stats = frame.agg(
        F.count(F.lit(1)).alias("rows"), F.min(time_column).alias("start"), F.max(time_column).alias("end")
    ).first()
    return {
        "dagster/row_count": int(stats["rows"]),
        **time_range(stats["start"], stats["end"]),
        "sample_rows": sample_rows(frame.limit(5).toPandas()),
    }
