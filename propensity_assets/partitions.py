import dagster as dg

# Event days are whatever the sources deliver (2017 for Taobao, 2016 for Diginetica, the simulator's own dates),
# so the ingestion asset registers each day it lands instead of fixing a calendar.
event_date_partitions = dg.DynamicPartitionsDefinition(name="event_date")
