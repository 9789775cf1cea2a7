"""The schema as versioned change sets, in the spirit of cattle's Liquibase changelogs.

MySQL commits DDL implicitly, so a node killed half-way through a change set leaves part of it
applied; every statement is therefore written to be safe to run again (IF NOT EXISTS, INSERT
IGNORE), and the change set is recorded in DATABASECHANGELOG only after all of it ran.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

FILENAME = "lab/server/changesets.py"
FENCE_TABLE = "halab_fence"  # coord.Fence's tokens (not cattle's: v1.0 had no fencing)


@dataclass(frozen=True)
class ChangeSet:
    id: str
    author: str
    description: str
    statements: tuple[str, ...]

    @property
    def md5(self) -> str:
        return "8:" + hashlib.md5("\n".join(self.statements).encode()).hexdigest()


# cattle's common resource columns.
_COMMON = """
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(255) NULL,
  account_id BIGINT NULL,
  kind VARCHAR(255) NOT NULL,
  uuid VARCHAR(128) NOT NULL,
  description VARCHAR(1024) NULL,
  state VARCHAR(128) NOT NULL,
  created DATETIME(6) NULL,
  removed DATETIME(6) NULL,
  remove_time DATETIME(6) NULL,
  data MEDIUMTEXT NULL"""

_TAIL = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"


def _resource_table(name: str, extra: str = "", indexes: str = "") -> str:
    cols = _COMMON + ("," + extra if extra else "")
    idx = f"UNIQUE KEY idx_{name}_uuid (uuid), KEY idx_{name}_name (name), KEY idx_{name}_state (state)"
    if indexes:
        idx += ", " + indexes
    return f"CREATE TABLE IF NOT EXISTS `{name}` ({cols},\n  {idx}) {_TAIL}"


# Also run by the rancher-1.0 node's cluster-manager, which made its own table (clustermgr.py).
CLUSTER_TABLE = f"""CREATE TABLE IF NOT EXISTS cluster (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(255) NULL,
  heartbeat BIGINT NULL,
  uuid VARCHAR(128) NOT NULL,
  ip_address VARCHAR(255) NULL,
  requested_index INT NULL,
  assigned_index INT NULL,
  ports TEXT NULL,
  data MEDIUMTEXT NULL,
  UNIQUE KEY idx_cluster_uuid (uuid)) {_TAIL}"""

CHANGESETS: tuple[ChangeSet, ...] = (
    ChangeSet(
        id="halab-0001-core",
        author="ha-lab",
        description="resource tables",
        statements=(
            _resource_table("account"),
            _resource_table(
                "agent",
                "\n  uri VARCHAR(255) NULL,\n  last_checkin DATETIME(6) NULL",
            ),
            _resource_table("host", "\n  agent_id BIGINT NULL", "KEY idx_host_agent (agent_id)"),
            _resource_table(
                "credential",
                "\n  public_value VARCHAR(255) NULL,\n  secret_value VARCHAR(255) NULL",
                "UNIQUE KEY idx_credential_public (public_value)",
            ),
            _resource_table("environment"),
            _resource_table(
                "service",
                "\n  environment_id BIGINT NULL,\n  scale INT NULL",
                "KEY idx_service_env (environment_id)",
            ),
            _resource_table(
                "instance",
                "\n  host_id BIGINT NULL,\n  image_uuid VARCHAR(255) NULL",
                "KEY idx_instance_host (host_id)",
            ),
        ),
    ),
    ChangeSet(
        id="halab-0002-process-setting-cluster",
        author="ha-lab",
        description="process_instance, setting and cluster tables",
        statements=(
            f"""CREATE TABLE IF NOT EXISTS process_instance (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  start_time DATETIME(6) NULL,
  end_time DATETIME(6) NULL,
  data MEDIUMTEXT NULL,
  priority INT NULL,
  process_name VARCHAR(128) NULL,
  resource_type VARCHAR(128) NULL,
  resource_id VARCHAR(128) NULL,
  result VARCHAR(128) NULL,
  exit_reason VARCHAR(128) NULL,
  phase VARCHAR(128) NULL,
  start_process_server_id VARCHAR(128) NULL,
  running_process_server_id VARCHAR(128) NULL,
  KEY idx_process_instance_end_time (end_time, start_time),
  KEY idx_process_instance_resource (resource_type, resource_id)) {_TAIL}""",
            f"""CREATE TABLE IF NOT EXISTS setting (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  value MEDIUMTEXT NULL,
  UNIQUE KEY idx_setting_name (name)) {_TAIL}""",
            CLUSTER_TABLE,
        ),
    ),
    ChangeSet(
        id="halab-0003-default-project",
        author="ha-lab",
        description="the Default project (the UI's environment) and schema version setting",
        statements=(
            "INSERT IGNORE INTO account (name, kind, uuid, description, state, created, data) "
            "VALUES ('Default', 'project', 'adminProject', 'Default project', 'active', NOW(6), '{}')",
            "INSERT IGNORE INTO setting (name, value) VALUES ('schema.version', 'halab-0003')",
        ),
    ),
    ChangeSet(
        id="halab-0004-fence",
        author="ha-lab",
        description="fencing tokens: per resource, the newest lock token a commit was made under",
        statements=(
            f"""CREATE TABLE IF NOT EXISTS {FENCE_TABLE} (
  resource VARCHAR(160) NOT NULL PRIMARY KEY,
  token BIGINT NOT NULL) {_TAIL}""",
        ),
    ),
)
