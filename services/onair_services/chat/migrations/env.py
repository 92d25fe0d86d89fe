from onair.db.migrations import run_env
from onair_services.chat.models import metadata

run_env(metadata)
