"""A background worker for the pm3 quick start: takes every Nth job by PM3_INSTANCE_ID."""
import os
import time

instance = int(os.environ["PM3_INSTANCE_ID"])
count = int(os.environ["PM3_INSTANCE_COUNT"])
for job in range(instance, 1_000_000, count):
    print(f"worker {instance}/{count}: job {job}", flush=True)
    time.sleep(5)
