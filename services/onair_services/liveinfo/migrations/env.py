from onair.db.migrations import run_env
from onair_services.liveinfo.models import target_metadata

run_env(target_metadata)
