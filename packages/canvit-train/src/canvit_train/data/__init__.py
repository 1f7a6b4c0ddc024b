"""canvit-train data: scenes, teacher-feature shards, standardization statistics, training loaders.

Modules (each documents its public API):
- `scenes`        image sources, the global seeded order (order.parquet), preprocessing
- `teacher`       frozen DINOv3 loading, target computation, `write_tiny_teacher`
- `shards`        on-disk layout, atomic shard writes, manifest merging, `ShardError`
- `export`        `canvit-train export-teacher-features`
- `verify`        `canvit-train verify-features`
- `standardizers` `canvit-train compute-standardizers`, fitting / loading into the model
- `loader`        `TrainingBatch`, `FeatureShardLoader`, `OnlineTeacherLoader`
- `smoke`         a tiny offline scene set + teacher + export for tests and smoke runs
"""
