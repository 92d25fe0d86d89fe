-- One database per service, each owned by its own role (docs/contracts.md: a service never reads
-- another's tables; here it cannot even connect to them). Run once by the postgres image on an empty
-- data directory (compose: deploy/postgres-init.sql; k8s: the copy in k8s/base/, kept equal
-- by tests/deploy). The passwords are for the self-contained compose/staging stores only; with
-- external stores, DATABASE_URL comes from a Secret (k8s/components/external-stores).

CREATE ROLE onair_auth LOGIN PASSWORD 'onair';
CREATE DATABASE onair_auth OWNER onair_auth;
REVOKE ALL ON DATABASE onair_auth FROM PUBLIC;

CREATE ROLE onair_liveapi LOGIN PASSWORD 'onair';
CREATE DATABASE onair_liveapi OWNER onair_liveapi;
REVOKE ALL ON DATABASE onair_liveapi FROM PUBLIC;

CREATE ROLE onair_media LOGIN PASSWORD 'onair';
CREATE DATABASE onair_media OWNER onair_media;
REVOKE ALL ON DATABASE onair_media FROM PUBLIC;

CREATE ROLE onair_liveinfo LOGIN PASSWORD 'onair';
CREATE DATABASE onair_liveinfo OWNER onair_liveinfo;
REVOKE ALL ON DATABASE onair_liveinfo FROM PUBLIC;

CREATE ROLE onair_search LOGIN PASSWORD 'onair';
CREATE DATABASE onair_search OWNER onair_search;
REVOKE ALL ON DATABASE onair_search FROM PUBLIC;

CREATE ROLE onair_chat LOGIN PASSWORD 'onair';
CREATE DATABASE onair_chat OWNER onair_chat;
REVOKE ALL ON DATABASE onair_chat FROM PUBLIC;

CREATE ROLE onair_wallet LOGIN PASSWORD 'onair';
CREATE DATABASE onair_wallet OWNER onair_wallet;
REVOKE ALL ON DATABASE onair_wallet FROM PUBLIC;
