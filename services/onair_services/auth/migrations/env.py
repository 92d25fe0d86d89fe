from onair.db.migrations import run_env
from onair_services.auth.models import metadata

run_env(metadata)
