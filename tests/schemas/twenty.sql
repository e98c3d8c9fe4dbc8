-- Twenty CRM: a minimal, faithful rebuild of one workspace's data schema, for crmflow's tests (PostgreSQL).
--
-- Source: github.com/twentyhq/twenty. The repository snapshot (2.4 GB) could not be fetched here; the files
-- were read through a public code index that names each stored version by commit:
--   opportunity      packages/twenty-server/src/modules/opportunity/standard-objects/opportunity.workspace-entity.ts
--                    @ d2f5cb81c537a44e08bdc022345be099c07db0dc
--   company          packages/twenty-server/src/modules/company/standard-objects/company.workspace-entity.ts
--                    @ 22a4ff2c858ea7441c7420c007bd280d8491719c
--   person           packages/twenty-server/src/modules/person/standard-objects/person.workspace-entity.ts
--                    @ fbfd69b954882e2d620a3af32fdef78fea5a953d
--   task             packages/twenty-server/src/modules/task/standard-objects/task.workspace-entity.ts
--                    @ e16f7bd343d9e17f720861d49e37c0f55d6e48cc
--   workspaceMember  packages/twenty-server/src/modules/workspace-member/standard-objects/workspace-member.workspace-entity.ts
--                    @ 65966e0ba3ea5d6aa3a95a4fc8c2f8ee7acbe08f
--   taskTarget       packages/twenty-server/src/modules/task/standard-objects/task-target.workspace-entity.ts
--                    @ 01abd1ffcf4f2147761a330404c243a8688b8a7c (taskId, personId, companyId, opportunityId); the ON DELETE
--                    rules are the onDelete of the taskTargets relations in the entities above (task: SET_NULL;
--                    person, company, opportunity: CASCADE)
--   id/createdAt/updatedAt/deletedAt
--                    packages/twenty-server/src/engine/twenty-orm/base.workspace-entity.ts @ 04929bf3f6868e0215583003dfe541b7f27f27af
--   composite -> columns  packages/twenty-server/src/engine/metadata-modules/field-metadata/utils/compute-column-name.util.ts
--                    @ 44697aa853c327c6cf8cfc65cd6b2853f741fe43 (computeCompositeColumnName: field name + PascalCase(property),
--                    so amount -> "amountAmountMicros", "amountCurrencyCode"; name -> "nameFirstName", "nameLastName");
--                    .../workspace-migration/factories/composite-column-action.factory.ts @ 22a4ff2c858ea7441c7420c007bd280d8491719c
--                    (a sub-column is nullable if the field is nullable or the property is not required);
--                    composite types in packages/twenty-shared/src/types/composite-types/: actor @ a0c8ee5f7bbb921604131196bd45f5be9d57b0f7,
--                    currency @ d1340b48b91a359580f780768f8077d4862a6b84, emails/full-name @ b8a9f65d705cc80777a2ba8c8673f5318ad3bc8f,
--                    rich-text-v2 @ 93fa27b6efdcea1272ecc9d5ddf8568ddd3d42d7
--   column types     .../workspace-migration/utils/field-metadata-type-to-column-type.util.ts @ ddda4cefd23145842c7389527c579887ea20e839
--                    (UUID uuid, TEXT text, NUMERIC numeric, NUMBER/POSITION float, BOOLEAN boolean, DATE_TIME timestamptz,
--                    SELECT enum, RAW_JSON jsonb)
--   NOT NULL/default packages/twenty-server/src/engine/twenty-orm/decorators/workspace-field.decorator.ts @ e23a800958a3ea1f3bb256227538132c820648f3
--                    (isNullable = @WorkspaceIsNullable present; defaultValue = options.defaultValue ?? generateDefaultValue(type));
--                    .../field-metadata/utils/generate-default-value.ts @ 0110c7c2928b9f99e429b524a89245ecdd7135e4 (ACTOR: 'MANUAL', 'System');
--                    .../field-metadata/utils/serialize-function-default-value.util.ts @ d4ae54d59d980a4920042c08820a6f4a586fbb90
--                    ('uuid' -> public.uuid_generate_v4(), 'now' -> now())
--   tables, enums, FKs packages/twenty-server/src/engine/workspace-manager/workspace-migration-runner/workspace-migration-runner.service.ts
--                    @ a087ec4dd695d9cd4a3119f9ed15d17c4596eeda (enum type "<table>_<column>_enum"; createForeignKey with the
--                    relation's onDelete), .../utils/table-default-column.util.ts @ 8c687d139bd7f73e653ee61894d81668406e55c0
--                    (id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4())
--   schema name      packages/twenty-server/src/engine/workspace-datasource/utils/get-workspace-schema-name.util.ts
--                    @ 41d242555963991041c474c5267df7d174c6a972: "workspace_" + base36(workspace uuid); here "workspace_test".
-- The result was checked against a pg_dump of a live Twenty workspace found in the same public code index
-- (repository not identifiable there): same column names, types, enum names and defaults.
--
-- Deliberate deviations from a real workspace:
--   * ids default to gen_random_uuid() (built into PostgreSQL 13+) instead of public.uuid_generate_v4(), which
--     needs the uuid-ossp extension; both give a random v4 uuid.
--   * the generated "searchVector" tsvector columns (they call public.unaccent_immutable()) and their GIN
--     indexes are left out; so are the deprecated columns (opportunity.probability, person.phone,
--     company.addressOld), newer fields (opportunity."ownerId", workspaceMember "numberFormat",
--     availability*), and relations to tables not rebuilt (attachments, favorites, notes, timeline ...).
--   * Twenty's own index names are hashes (IDX_<hash>); the indexes below have readable names.
--   * the uniqueness Twenty enforces on person."emailsPrimaryEmail", company."domainNamePrimaryLinkUrl" and
--     workspaceMember."userEmail" (@WorkspaceIsUnique, created "at a higher level" than the column) is left out.

CREATE SCHEMA IF NOT EXISTS workspace_test;

-- enum types: one per SELECT column (and per actor "source" sub-column), named <table>_<column>_enum
CREATE TYPE workspace_test.opportunity_stage_enum AS ENUM ('NEW', 'SCREENING', 'MEETING', 'PROPOSAL', 'CUSTOMER');
CREATE TYPE workspace_test.task_status_enum AS ENUM ('TODO', 'IN_PROGRESS', 'DONE');
CREATE TYPE workspace_test."workspaceMember_dateFormat_enum" AS ENUM ('SYSTEM', 'MONTH_FIRST', 'DAY_FIRST', 'YEAR_FIRST');
CREATE TYPE workspace_test."workspaceMember_timeFormat_enum" AS ENUM ('SYSTEM', 'HOUR_24', 'HOUR_12');
CREATE TYPE workspace_test."company_createdBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');
CREATE TYPE workspace_test."company_updatedBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');
CREATE TYPE workspace_test."person_createdBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');
CREATE TYPE workspace_test."person_updatedBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');
CREATE TYPE workspace_test."opportunity_createdBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');
CREATE TYPE workspace_test."opportunity_updatedBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');
CREATE TYPE workspace_test."task_createdBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');
CREATE TYPE workspace_test."task_updatedBySource_enum" AS ENUM ('EMAIL', 'CALENDAR', 'WORKFLOW', 'AGENT', 'API', 'IMPORT', 'MANUAL', 'SYSTEM', 'WEBHOOK', 'APPLICATION');

-- workspaceMember: the users of the workspace (a system object: no createdBy/updatedBy)
CREATE TABLE workspace_test."workspaceMember" (
    id                 uuid DEFAULT gen_random_uuid() NOT NULL,
    "createdAt"        timestamptz DEFAULT now() NOT NULL,
    "updatedAt"        timestamptz DEFAULT now() NOT NULL,
    "deletedAt"        timestamptz,
    "position"         double precision DEFAULT 0 NOT NULL,
    "nameFirstName"    text,
    "nameLastName"     text,
    "colorScheme"      text DEFAULT 'System' NOT NULL,
    locale             text DEFAULT 'en' NOT NULL,
    "avatarUrl"        text,
    "userEmail"        text,
    "calendarStartDay" double precision DEFAULT 7 NOT NULL,
    "userId"           uuid NOT NULL,      -- core."user".id, outside the workspace schema
    "timeZone"         text DEFAULT 'system' NOT NULL,
    "dateFormat"       workspace_test."workspaceMember_dateFormat_enum" DEFAULT 'SYSTEM' NOT NULL,
    "timeFormat"       workspace_test."workspaceMember_timeFormat_enum" DEFAULT 'SYSTEM' NOT NULL,
    CONSTRAINT "PK_workspaceMember" PRIMARY KEY (id)
);

CREATE TABLE workspace_test.company (
    id                                   uuid DEFAULT gen_random_uuid() NOT NULL,
    "createdAt"                          timestamptz DEFAULT now() NOT NULL,
    "updatedAt"                          timestamptz DEFAULT now() NOT NULL,
    "deletedAt"                          timestamptz,
    name                                 text,
    "domainNamePrimaryLinkLabel"         text,
    "domainNamePrimaryLinkUrl"           text,
    "domainNameSecondaryLinks"           jsonb,
    employees                            double precision,
    "linkedinLinkPrimaryLinkLabel"       text,
    "linkedinLinkPrimaryLinkUrl"         text,
    "linkedinLinkSecondaryLinks"         jsonb,
    "annualRecurringRevenueAmountMicros" numeric,
    "annualRecurringRevenueCurrencyCode" text,
    "addressAddressStreet1"              text,
    "addressAddressStreet2"              text,
    "addressAddressCity"                 text,
    "addressAddressPostcode"             text,
    "addressAddressState"                text,
    "addressAddressCountry"              text,
    "addressAddressLat"                  numeric,
    "addressAddressLng"                  numeric,
    "idealCustomerProfile"               boolean DEFAULT false NOT NULL,
    "position"                           double precision DEFAULT 0 NOT NULL,
    "createdBySource"                    workspace_test."company_createdBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "createdByWorkspaceMemberId"         uuid,
    "createdByName"                      text DEFAULT 'System' NOT NULL,
    "createdByContext"                   jsonb,
    "updatedBySource"                    workspace_test."company_updatedBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "updatedByWorkspaceMemberId"         uuid,
    "updatedByName"                      text DEFAULT 'System' NOT NULL,
    "updatedByContext"                   jsonb,
    "accountOwnerId"                     uuid,
    CONSTRAINT "PK_company" PRIMARY KEY (id)
);

CREATE TABLE workspace_test.person (
    id                              uuid DEFAULT gen_random_uuid() NOT NULL,
    "createdAt"                     timestamptz DEFAULT now() NOT NULL,
    "updatedAt"                     timestamptz DEFAULT now() NOT NULL,
    "deletedAt"                     timestamptz,
    "nameFirstName"                 text,
    "nameLastName"                  text,
    "emailsPrimaryEmail"            text,
    "emailsAdditionalEmails"        jsonb,
    "linkedinLinkPrimaryLinkLabel"  text,
    "linkedinLinkPrimaryLinkUrl"    text,
    "linkedinLinkSecondaryLinks"    jsonb,
    "jobTitle"                      text,
    "phonesPrimaryPhoneNumber"      text,
    "phonesPrimaryPhoneCountryCode" text,
    "phonesPrimaryPhoneCallingCode" text,
    "phonesAdditionalPhones"        jsonb,
    city                            text,
    "avatarUrl"                     text,
    "position"                      double precision DEFAULT 0 NOT NULL,
    "createdBySource"               workspace_test."person_createdBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "createdByWorkspaceMemberId"    uuid,
    "createdByName"                 text DEFAULT 'System' NOT NULL,
    "createdByContext"              jsonb,
    "updatedBySource"               workspace_test."person_updatedBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "updatedByWorkspaceMemberId"    uuid,
    "updatedByName"                 text DEFAULT 'System' NOT NULL,
    "updatedByContext"              jsonb,
    "companyId"                     uuid,
    CONSTRAINT "PK_person" PRIMARY KEY (id)
);

CREATE TABLE workspace_test.opportunity (
    id                           uuid DEFAULT gen_random_uuid() NOT NULL,
    "createdAt"                  timestamptz DEFAULT now() NOT NULL,
    "updatedAt"                  timestamptz DEFAULT now() NOT NULL,
    "deletedAt"                  timestamptz,
    name                         text,
    "amountAmountMicros"         numeric,      -- amount x 1,000,000
    "amountCurrencyCode"         text,         -- ISO 4217
    "closeDate"                  timestamptz,
    stage                        workspace_test.opportunity_stage_enum DEFAULT 'NEW' NOT NULL,
    "position"                   double precision DEFAULT 0 NOT NULL,
    "createdBySource"            workspace_test."opportunity_createdBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "createdByWorkspaceMemberId" uuid,
    "createdByName"              text DEFAULT 'System' NOT NULL,
    "createdByContext"           jsonb,
    "updatedBySource"            workspace_test."opportunity_updatedBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "updatedByWorkspaceMemberId" uuid,
    "updatedByName"              text DEFAULT 'System' NOT NULL,
    "updatedByContext"           jsonb,
    "pointOfContactId"           uuid,
    "companyId"                  uuid,
    CONSTRAINT "PK_opportunity" PRIMARY KEY (id)
);

CREATE TABLE workspace_test.task (
    id                           uuid DEFAULT gen_random_uuid() NOT NULL,
    "createdAt"                  timestamptz DEFAULT now() NOT NULL,
    "updatedAt"                  timestamptz DEFAULT now() NOT NULL,
    "deletedAt"                  timestamptz,
    "position"                   double precision DEFAULT 0 NOT NULL,
    title                        text,
    "bodyV2Blocknote"            text,         -- BlockNote JSON, as text
    "bodyV2Markdown"             text,
    "dueAt"                      timestamptz,
    status                       workspace_test.task_status_enum DEFAULT 'TODO',
    "createdBySource"            workspace_test."task_createdBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "createdByWorkspaceMemberId" uuid,
    "createdByName"              text DEFAULT 'System' NOT NULL,
    "createdByContext"           jsonb,
    "updatedBySource"            workspace_test."task_updatedBySource_enum" DEFAULT 'MANUAL' NOT NULL,
    "updatedByWorkspaceMemberId" uuid,
    "updatedByName"              text DEFAULT 'System' NOT NULL,
    "updatedByContext"           jsonb,
    "assigneeId"                 uuid,
    CONSTRAINT "PK_task" PRIMARY KEY (id)
);

-- a task reaches its opportunity/company/person only through a taskTarget row
CREATE TABLE workspace_test."taskTarget" (
    id              uuid DEFAULT gen_random_uuid() NOT NULL,
    "createdAt"     timestamptz DEFAULT now() NOT NULL,
    "updatedAt"     timestamptz DEFAULT now() NOT NULL,
    "deletedAt"     timestamptz,
    "taskId"        uuid,
    "personId"      uuid,
    "companyId"     uuid,
    "opportunityId" uuid,
    CONSTRAINT "PK_taskTarget" PRIMARY KEY (id)
);

-- foreign keys: one per MANY_TO_ONE relation, ON DELETE as the relation's onDelete
ALTER TABLE workspace_test.company ADD CONSTRAINT "FK_company_accountOwnerId" FOREIGN KEY ("accountOwnerId") REFERENCES workspace_test."workspaceMember"(id) ON DELETE SET NULL;
ALTER TABLE workspace_test.person ADD CONSTRAINT "FK_person_companyId" FOREIGN KEY ("companyId") REFERENCES workspace_test.company(id) ON DELETE SET NULL;
ALTER TABLE workspace_test.opportunity ADD CONSTRAINT "FK_opportunity_pointOfContactId" FOREIGN KEY ("pointOfContactId") REFERENCES workspace_test.person(id) ON DELETE SET NULL;
ALTER TABLE workspace_test.opportunity ADD CONSTRAINT "FK_opportunity_companyId" FOREIGN KEY ("companyId") REFERENCES workspace_test.company(id) ON DELETE SET NULL;
ALTER TABLE workspace_test.task ADD CONSTRAINT "FK_task_assigneeId" FOREIGN KEY ("assigneeId") REFERENCES workspace_test."workspaceMember"(id) ON DELETE SET NULL;
ALTER TABLE workspace_test."taskTarget" ADD CONSTRAINT "FK_taskTarget_taskId" FOREIGN KEY ("taskId") REFERENCES workspace_test.task(id) ON DELETE SET NULL;
ALTER TABLE workspace_test."taskTarget" ADD CONSTRAINT "FK_taskTarget_personId" FOREIGN KEY ("personId") REFERENCES workspace_test.person(id) ON DELETE CASCADE;
ALTER TABLE workspace_test."taskTarget" ADD CONSTRAINT "FK_taskTarget_companyId" FOREIGN KEY ("companyId") REFERENCES workspace_test.company(id) ON DELETE CASCADE;
ALTER TABLE workspace_test."taskTarget" ADD CONSTRAINT "FK_taskTarget_opportunityId" FOREIGN KEY ("opportunityId") REFERENCES workspace_test.opportunity(id) ON DELETE CASCADE;

-- indexes on the join columns and on opportunity.stage (@WorkspaceFieldIndex)
CREATE INDEX "IDX_company_accountOwnerId" ON workspace_test.company ("accountOwnerId");
CREATE INDEX "IDX_person_companyId" ON workspace_test.person ("companyId");
CREATE INDEX "IDX_opportunity_stage" ON workspace_test.opportunity (stage);
CREATE INDEX "IDX_opportunity_companyId" ON workspace_test.opportunity ("companyId");
CREATE INDEX "IDX_opportunity_pointOfContactId" ON workspace_test.opportunity ("pointOfContactId");
CREATE INDEX "IDX_task_assigneeId" ON workspace_test.task ("assigneeId");
CREATE INDEX "IDX_taskTarget_taskId" ON workspace_test."taskTarget" ("taskId");
CREATE INDEX "IDX_taskTarget_opportunityId" ON workspace_test."taskTarget" ("opportunityId");
-- Not Twenty's: added for crmflow, which polls by "updatedAt".
CREATE INDEX crmflow_opportunity_updatedat_idx ON workspace_test.opportunity ("updatedAt");
CREATE INDEX crmflow_task_updatedat_idx ON workspace_test.task ("updatedAt");
CREATE INDEX crmflow_company_updatedat_idx ON workspace_test.company ("updatedAt");
CREATE INDEX crmflow_person_updatedat_idx ON workspace_test.person ("updatedAt");

-- ---------------------------------------------------------------------------------------------
-- Seed. Amounts are micros (EUR 48,000 -> 48000000000). Timestamps carry their zone.
-- ---------------------------------------------------------------------------------------------

INSERT INTO workspace_test."workspaceMember" (id, "createdAt", "updatedAt", "nameFirstName", "nameLastName", "userEmail", "userId", locale, "timeZone") VALUES
 ('5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a01', '2026-09-01 08:00:00+00', '2026-09-01 08:00:00+00', 'Sarah', 'Okafor', 'sarah.okafor@nordlicht.example', 'a1f0e7a2-3c4b-4d5e-8f90-1a2b3c4d5e01', 'en', 'Europe/Berlin'),
 ('5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', '2026-09-01 08:05:00+00', '2026-10-12 14:30:00+00', 'Priya', 'Raman', 'priya.raman@nordlicht.example', 'a1f0e7a2-3c4b-4d5e-8f90-1a2b3c4d5e02', 'en', 'Europe/Berlin'),
 ('5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', '2026-09-01 08:10:00+00', '2026-09-01 08:10:00+00', 'Tom', 'Becker', 'tom.becker@nordlicht.example', 'a1f0e7a2-3c4b-4d5e-8f90-1a2b3c4d5e03', 'de', 'system');

INSERT INTO workspace_test.company (id, "createdAt", "updatedAt", "deletedAt", name, "domainNamePrimaryLinkUrl", "domainNamePrimaryLinkLabel", "domainNameSecondaryLinks",
                                    employees, "annualRecurringRevenueAmountMicros", "annualRecurringRevenueCurrencyCode", "addressAddressCity", "addressAddressCountry",
                                    "idealCustomerProfile", "position", "createdBySource", "createdByWorkspaceMemberId", "createdByName",
                                    "updatedBySource", "updatedByWorkspaceMemberId", "updatedByName", "accountOwnerId") VALUES
 ('c0a5e1d2-0001-4e7a-9b1c-6f2d8e4a7b01', '2026-09-14 09:12:41+00', '2026-11-20 16:02:10+00', NULL, 'Acme Logistics', 'https://acme-logistics.example', '', NULL,
  420, 38000000000000, 'EUR', 'Hamburg', 'Germany',
  true, 1, 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker',
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03'),
 ('c0a5e1d2-0002-4e7a-9b1c-6f2d8e4a7b02', '2026-10-02 11:40:03+00', '2026-11-24 10:15:55+00', NULL, 'Northwind Foods', 'https://northwind-foods.example', '', NULL,
  1200, NULL, NULL, 'Rotterdam', 'Netherlands',
  false, 2, 'IMPORT', NULL, 'Import',
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03'),
 ('c0a5e1d2-0003-4e7a-9b1c-6f2d8e4a7b03', '2026-10-20 13:05:27+00', '2026-12-01 09:44:18+00', NULL, 'Delta Sensors GmbH', 'https://delta-sensors.example', '', NULL,
  85, 12000000000000, 'EUR', 'Munich', 'Germany',
  true, 3, 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', 'Priya Raman',
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', 'Priya Raman', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02'),
 ('c0a5e1d2-0004-4e7a-9b1c-6f2d8e4a7b04', '2026-10-03 10:00:00+00', '2026-10-04 09:00:00+00', '2026-10-04 09:00:00+00', 'Acme Logistics (duplicate)', 'https://acme-logistics.example', '', NULL,
  NULL, NULL, NULL, NULL, NULL,
  false, 4, 'IMPORT', NULL, 'Import',
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a01', 'Sarah Okafor', NULL);

INSERT INTO workspace_test.person (id, "createdAt", "updatedAt", "nameFirstName", "nameLastName", "emailsPrimaryEmail", "emailsAdditionalEmails", "jobTitle",
                                   "phonesPrimaryPhoneNumber", "phonesPrimaryPhoneCountryCode", "phonesPrimaryPhoneCallingCode", city, "position",
                                   "createdBySource", "createdByWorkspaceMemberId", "createdByName", "updatedBySource", "updatedByWorkspaceMemberId", "updatedByName", "companyId") VALUES
 ('b7e2d9c4-0001-4a3f-8c5d-1e9f2a6b3c01', '2026-09-14 09:20:00+00', '2026-09-14 09:20:00+00', 'Henrik', 'Brandt', 'h.brandt@acme-logistics.example', NULL, 'Fleet Manager',
  '405551201', 'DE', '+49', 'Hamburg', 1,
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', 'c0a5e1d2-0001-4e7a-9b1c-6f2d8e4a7b01'),
 ('b7e2d9c4-0002-4a3f-8c5d-1e9f2a6b3c02', '2026-10-02 11:45:00+00', '2026-10-02 11:45:00+00', 'Femke', 'de Vries', 'femke.devries@northwind-foods.example', '["procurement@northwind-foods.example"]', 'Head of Procurement',
  '105550199', 'NL', '+31', 'Rotterdam', 2,
  'IMPORT', NULL, 'Import', 'IMPORT', NULL, 'Import', 'c0a5e1d2-0002-4e7a-9b1c-6f2d8e4a7b02'),
 ('b7e2d9c4-0003-4a3f-8c5d-1e9f2a6b3c03', '2026-10-20 13:06:02+00', '2026-10-20 13:06:02+00', 'Jana', 'Vogel', 'jana.vogel@delta-sensors.example', NULL, 'Head of Operations',
  '1515550163', 'DE', '+49', 'Munich', 3,
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', 'Priya Raman', 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', 'Priya Raman', 'c0a5e1d2-0003-4e7a-9b1c-6f2d8e4a7b03');

-- opportunities at four stages
INSERT INTO workspace_test.opportunity (id, "createdAt", "updatedAt", name, "amountAmountMicros", "amountCurrencyCode", "closeDate", stage, "position",
                                        "createdBySource", "createdByWorkspaceMemberId", "createdByName", "updatedBySource", "updatedByWorkspaceMemberId", "updatedByName",
                                        "pointOfContactId", "companyId") VALUES
 ('0f3a9d2e-0001-4b6c-a7d8-9e0f1a2b3c01', '2026-11-18 10:03:12+00', '2026-11-18 10:03:12+00', 'Acme fleet telematics rollout', 48000000000, 'EUR', '2027-02-26 00:00:00+00', 'SCREENING', 1,
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker',
  'b7e2d9c4-0001-4a3f-8c5d-1e9f2a6b3c01', 'c0a5e1d2-0001-4e7a-9b1c-6f2d8e4a7b01'),
 ('0f3a9d2e-0002-4b6c-a7d8-9e0f1a2b3c02', '2026-10-05 15:20:44+00', '2026-11-24 10:15:55+00', 'Northwind cold-chain sensors', 125000000000, 'EUR', '2027-01-15 00:00:00+00', 'PROPOSAL', 2,
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker',
  'b7e2d9c4-0002-4a3f-8c5d-1e9f2a6b3c02', 'c0a5e1d2-0002-4e7a-9b1c-6f2d8e4a7b02'),
 ('0f3a9d2e-0003-4b6c-a7d8-9e0f1a2b3c03', '2026-10-20 13:09:02+00', '2026-12-01 09:44:18+00', 'Delta warehouse sensors', 260000000000, 'EUR', '2026-12-18 00:00:00+00', 'MEETING', 3,
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', 'Priya Raman', 'API', NULL, 'crmflow',
  'b7e2d9c4-0003-4a3f-8c5d-1e9f2a6b3c03', 'c0a5e1d2-0003-4e7a-9b1c-6f2d8e4a7b03'),
 ('0f3a9d2e-0004-4b6c-a7d8-9e0f1a2b3c04', '2026-09-20 08:30:00+00', '2026-11-20 16:02:10+00', 'Acme yard cameras', 31500000000, 'EUR', '2026-11-20 00:00:00+00', 'CUSTOMER', 4,
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker',
  'b7e2d9c4-0001-4a3f-8c5d-1e9f2a6b3c01', 'c0a5e1d2-0001-4e7a-9b1c-6f2d8e4a7b01');

INSERT INTO workspace_test.task (id, "createdAt", "updatedAt", "position", title, "bodyV2Blocknote", "bodyV2Markdown", "dueAt", status,
                                 "createdBySource", "createdByWorkspaceMemberId", "createdByName", "updatedBySource", "updatedByWorkspaceMemberId", "updatedByName", "assigneeId") VALUES
 ('7d1e4f6a-0001-4c2b-9e3d-5a6b7c8d9e01', '2026-11-24 10:16:30+00', '2026-11-24 10:16:30+00', 1, 'Call Northwind about the quote', NULL, NULL, '2026-12-08 09:00:00+00', 'TODO',
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03', 'Tom Becker', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03'),
 ('7d1e4f6a-0002-4c2b-9e3d-5a6b7c8d9e02', '2026-12-01 09:45:02+00', '2026-12-02 15:12:37+00', 2, 'Send revised contract to Delta legal',
  '[{"type":"paragraph","content":[{"type":"text","text":"Include the 5 percent volume discount."}]}]', 'Include the 5 percent volume discount.', '2026-12-04 17:00:00+00', 'IN_PROGRESS',
  'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', 'Priya Raman', 'MANUAL', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02', 'Priya Raman', '5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02');

INSERT INTO workspace_test."taskTarget" (id, "createdAt", "updatedAt", "taskId", "personId", "companyId", "opportunityId") VALUES
 ('e4c3b2a1-0001-4f5e-8d7c-6b5a4f3e2d01', '2026-11-24 10:16:30+00', '2026-11-24 10:16:30+00', '7d1e4f6a-0001-4c2b-9e3d-5a6b7c8d9e01', NULL, NULL, '0f3a9d2e-0002-4b6c-a7d8-9e0f1a2b3c02'),
 ('e4c3b2a1-0002-4f5e-8d7c-6b5a4f3e2d02', '2026-12-01 09:45:02+00', '2026-12-01 09:45:02+00', '7d1e4f6a-0002-4c2b-9e3d-5a6b7c8d9e02', NULL, NULL, '0f3a9d2e-0003-4b6c-a7d8-9e0f1a2b3c03');
