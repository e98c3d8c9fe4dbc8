-- Odoo 16/17 CRM: a minimal, faithful rebuild of part of its database, for crmflow's tests (PostgreSQL).
--
-- Source: github.com/odoo/odoo. The repository snapshot (19 GB) could not be fetched here; the files were
-- read through a public code index that stores many versions of each file but names commits, not
-- branches. Each version is cited by commit, with the series its content shows. Only columns that are
-- declared the same way in every version read (which bracket 16.0 and 17.0) are kept; the few
-- exceptions are marked in the table comments below.
--
--   column types, NOT NULL, FKs   odoo/fields.py @ f9ebbb9bebc01fde8f0119d69d6f53b5fc1aa73a (17.0 series:
--                                 export_string_translation, group_operator, Properties):
--                                 Char -> VARCHAR (jsonb when translate=True), Text/Html -> text,
--                                 Integer -> int4, Float -> float8 (numeric with digits), Monetary -> numeric,
--                                 Boolean -> bool, Date -> date, Datetime -> timestamp (naive, UTC),
--                                 Selection -> VARCHAR, Many2one -> int4 + FOREIGN KEY ON DELETE
--                                 ondelete or ('restrict' if required else 'set null'),
--                                 translated values stored as {"en_US": value, <lang>: value}.
--   id, create/write columns      odoo/models.py @ dbd5b3b3919517818b9761524d99cdf0c4454364 (MetaModel adds
--                                 create_uid/write_uid Many2one res.users, create_date/write_date Datetime);
--                                 odoo/tools/sql.py @ 21c68ca0889eddf106553b005460200e4ed4eb05
--                                 (create_model_table: "id SERIAL NOT NULL, PRIMARY KEY(id)";
--                                 set_not_null for required fields; add_foreign_key format).
--   index names                   odoo/tools/sql.py make_index_name(): "{table}__{column}_index" (16+)
--   res_partner                   odoo/addons/base/models/res_partner.py @ 00021842e4990247462ae36c0f23fc58b3cde3ab
--   res_users                     odoo/addons/base/models/res_users.py @ 0024699f660214358664f3a8661e7486da9b8b3d
--   res_company                   odoo/addons/base/models/res_company.py @ 0019710deae9d7f8691043e4946dd5b3488a50fd
--   res_currency                  odoo/addons/base/models/res_currency.py (name: Char size=3 required, symbol required)
--   crm_stage                     addons/crm/models/crm_stage.py @ 04a455ba9f0175237608f3f5d5cab71ae8863f18 (17.0+);
--                                 seed names/sequences from addons/crm/data/crm_stage_data.xml
--   crm_lead                      addons/crm/models/crm_lead.py @ 0015f11c6480502f817e95c454b82b6beee8dd86
--                                 (pre-16 series) and @ 694f48a59a2d15e2655708d299329b33003e2c9f (master):
--                                 every kept column is declared identically in both
--   mail_activity_type            addons/mail/models/mail_activity_type.py @ 00ce3720c6ca422ee8e0ae6e172b90cd6bf180b9;
--                                 seed from addons/mail/data/mail_activity_type_data.xml
--   mail_activity                 addons/mail/models/mail_activity.py @ 162c5dea4099ba9d8c197814b02f5c6accd0688c
--                                 (master) checked against @ 006613735a55fe8a5b8bcc65ccaa9255b3bfd46c (12.0)
--   sale_order                    addons/sale/models/sale_order.py @ 997c371a560752fcd7fad7cffdeff4376a2530f4
--                                 (16.0 series: states=, state 'done'); opportunity_id from
--                                 addons/sale_crm/models/sale_order.py @ 0e9cfaa356f96ef11ebf6aa0402a9ae16973880e
--   ir_model                      only the two columns mail_activity needs (model, name)
--
-- Odoo puts NO column DEFAULTs in the database (defaults are applied by the ORM in Python): a writer that
-- bypasses the ORM must set active = true, type, state ... itself. Only `id` has a database default.
-- Tables that the kept foreign keys would point to but that are not rebuilt (crm_team, crm_lost_reason,
-- utm_*, product_pricelist, res_country, res_lang, ...) keep their int4 column without the FOREIGN KEY.
-- Like Odoo, the foreign keys are added after all tables exist.

CREATE TABLE res_currency (
    id          SERIAL NOT NULL,
    name        VARCHAR(3) NOT NULL,           -- ISO 4217 code
    symbol      VARCHAR NOT NULL,
    active      bool,
    create_uid  int4,
    create_date timestamp without time zone,
    write_uid   int4,
    write_date  timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT res_currency_unique_name UNIQUE (name)
);

CREATE TABLE res_partner (
    id                    SERIAL NOT NULL,
    name                  VARCHAR,
    complete_name         VARCHAR,             -- stored compute (name, "Company, Person" for contacts)
    parent_id             int4,                -- the company of a contact
    company_id            int4,
    user_id               int4,                -- salesperson
    type                  VARCHAR,             -- contact | invoice | delivery | other
    ref                   VARCHAR,
    lang                  VARCHAR,
    email                 VARCHAR,
    phone                 VARCHAR,
    website               VARCHAR,
    is_company            bool,
    active                bool,
    commercial_partner_id int4,                -- stored compute: the company (or self)
    create_uid            int4,
    create_date           timestamp without time zone,
    write_uid             int4,
    write_date            timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT res_partner_check_name CHECK( (type='contact' AND name IS NOT NULL) or (type!='contact') )
);

CREATE TABLE res_company (
    id          SERIAL NOT NULL,
    name        VARCHAR NOT NULL,              -- related partner_id.name, stored
    partner_id  int4 NOT NULL,
    currency_id int4 NOT NULL,
    active      bool,
    sequence    int4,
    email       VARCHAR,
    phone       VARCHAR,
    create_uid  int4,
    create_date timestamp without time zone,
    write_uid   int4,
    write_date  timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT res_company_name_uniq UNIQUE (name)
);

-- res_users _inherits res_partner: name/email/phone live on the partner row (partner_id)
CREATE TABLE res_users (
    id          SERIAL NOT NULL,
    login       VARCHAR NOT NULL,
    password    VARCHAR,                       -- written by SQL in _set_encrypted_password()
    partner_id  int4 NOT NULL,
    company_id  int4 NOT NULL,
    active      bool,
    share       bool,                          -- stored compute: portal/public user
    signature   text,
    create_uid  int4,
    create_date timestamp without time zone,
    write_uid   int4,
    write_date  timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT res_users_login_key UNIQUE (login)
);

CREATE TABLE ir_model (
    id          SERIAL NOT NULL,
    model       VARCHAR NOT NULL,              -- 'crm.lead'
    name        jsonb NOT NULL,                -- translated: {"en_US": "Lead"}
    create_uid  int4,
    create_date timestamp without time zone,
    write_uid   int4,
    write_date  timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT ir_model_obj_name_uniq UNIQUE (model)
);

CREATE TABLE crm_stage (
    id           SERIAL NOT NULL,
    name         jsonb NOT NULL,               -- translate=True: {"en_US": "New"} (16.0+; a VARCHAR before)
    sequence     int4,
    is_won       bool,
    requirements text,
    team_id      int4,                         -- FK crm_team ON DELETE SET NULL (table not rebuilt)
    fold         bool,
    color        int4,                         -- 17.0+
    create_uid   int4,
    create_date  timestamp without time zone,
    write_uid    int4,
    write_date   timestamp without time zone,
    PRIMARY KEY (id)
);

-- crm.lead holds leads AND opportunities (type); left out: the utm/address/phone-sanitizing/scoring
-- columns (campaign_id, medium_id, source_id, street, street2, zip, city, state_id, country_id, mobile,
-- function, title, lang_id, email_normalized, phone_sanitized, email_state, phone_state, email_cc,
-- message_bounce, recurring_*, day_open, day_close, date_conversion, date_action_last /
-- date_automation_last, lead_properties, ...), all nullable.
CREATE TABLE crm_lead (
    id                     SERIAL NOT NULL,
    name                   VARCHAR NOT NULL,
    user_id                int4,               -- salesperson
    team_id                int4,               -- FK crm_team ON DELETE SET NULL (table not rebuilt)
    company_id             int4,
    referred               VARCHAR,
    description            text,               -- Html
    active                 bool,               -- archive flag; the ORM hides active = false (and NULL) rows
    type                   VARCHAR NOT NULL,   -- 'lead' | 'opportunity'
    priority               VARCHAR,            -- '0' | '1' | '2' | '3'
    stage_id               int4,
    color                  int4,
    expected_revenue       numeric,            -- Monetary, currency = company currency
    prorated_revenue       numeric,            -- stored compute: expected_revenue * probability / 100
    date_closed            timestamp without time zone,
    date_open              timestamp without time zone,
    date_last_stage_update timestamp without time zone,
    date_deadline          date,               -- "Expected Closing"
    partner_id             int4,               -- the customer (company or person)
    contact_name           VARCHAR,
    partner_name           VARCHAR,
    email_from             VARCHAR,
    phone                  VARCHAR,
    website                VARCHAR,
    probability            float8,
    automated_probability  float8,
    lost_reason_id         int4,               -- FK crm_lost_reason ON DELETE RESTRICT (table not rebuilt)
    create_uid             int4,
    create_date            timestamp without time zone,
    write_uid              int4,
    write_date             timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT crm_lead_check_probability CHECK (probability >= 0 and probability <= 100)
);

CREATE TABLE mail_activity_type (
    id                     SERIAL NOT NULL,
    name                   jsonb NOT NULL,     -- translated
    summary                jsonb,              -- translated
    sequence               int4,
    active                 bool,
    delay_count            int4,
    delay_unit             VARCHAR NOT NULL,   -- days | weeks | months
    delay_from             VARCHAR NOT NULL,   -- current_date | previous_activity
    icon                   VARCHAR,
    decoration_type        VARCHAR,            -- warning | danger
    res_model              VARCHAR,            -- NULL = usable on every model
    triggered_next_type_id int4,
    chaining_type          VARCHAR NOT NULL,   -- suggest | trigger
    category               VARCHAR,            -- default | upload_file | phonecall
    default_user_id        int4,
    default_note           jsonb,              -- Html, translated
    create_uid             int4,
    create_date            timestamp without time zone,
    write_uid              int4,
    write_date             timestamp without time zone,
    PRIMARY KEY (id)
);

-- An activity points at any record by (res_model_id, res_model, res_id): no FK on res_id.
CREATE TABLE mail_activity (
    id                           SERIAL NOT NULL,
    res_model_id                 int4 NOT NULL,
    res_model                    VARCHAR,      -- related res_model_id.model, stored: 'crm.lead'
    res_id                       int4,         -- Many2oneReference (Integer column)
    res_name                     VARCHAR,      -- stored compute: display name of the record
    activity_type_id             int4,
    summary                      VARCHAR,
    note                         text,         -- Html
    date_deadline                date NOT NULL,
    date_done                    date,         -- master only (absent in 12.0): check before relying on it
    automated                    bool,
    user_id                      int4 NOT NULL, -- assigned to
    recommended_activity_type_id int4,
    previous_activity_type_id    int4,
    active                       bool,         -- master only (absent in 12.0): done activities are archived
    create_uid                   int4,
    create_date                  timestamp without time zone,
    write_uid                    int4,
    write_date                   timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT mail_activity_check_res_id_is_set CHECK (res_id IS NOT NULL AND res_id != 0)
);

-- sale.order as in the 16.0 series (quotations are orders in state draft/sent); 17.0 removed the
-- 'done' state in favour of a `locked` boolean. Left out: signature, fiscal_position_id, payment_term_id,
-- journal_id, analytic_account_id, campaign/medium/source, access_token, ... (all nullable).
CREATE TABLE sale_order (
    id                  SERIAL NOT NULL,
    name                VARCHAR NOT NULL,      -- 'New' until confirmed numbering (S00001)
    company_id          int4 NOT NULL,
    partner_id          int4 NOT NULL,
    state               VARCHAR,               -- draft | sent | sale | done | cancel
    client_order_ref    VARCHAR,
    commitment_date     timestamp without time zone,
    date_order          timestamp without time zone NOT NULL,
    origin              VARCHAR,
    reference           VARCHAR,
    require_signature   bool,
    require_payment     bool,
    signed_by           VARCHAR,
    signed_on           timestamp without time zone,
    validity_date       date,                  -- quotation expiration
    note                text,
    partner_invoice_id  int4 NOT NULL,
    partner_shipping_id int4 NOT NULL,
    pricelist_id        int4 NOT NULL,         -- FK product_pricelist ON DELETE RESTRICT (table not rebuilt)
    currency_id         int4,                  -- related pricelist_id.currency_id, stored
    currency_rate       numeric,
    user_id             int4,
    team_id             int4,                  -- FK crm_team ON DELETE SET NULL (table not rebuilt)
    amount_untaxed      numeric,
    amount_tax          numeric,
    amount_total        numeric,
    invoice_status      VARCHAR,
    opportunity_id      int4,                  -- sale_crm: the crm.lead the quotation was made from
    create_uid          int4,
    create_date         timestamp without time zone,
    write_uid           int4,
    write_date          timestamp without time zone,
    PRIMARY KEY (id),
    CONSTRAINT sale_order_date_order_conditional_required
        CHECK ((state IN ('sale', 'done') AND date_order IS NOT NULL) OR state NOT IN ('sale', 'done'))
);

-- Foreign keys, in Odoo's add_foreign_key() form
ALTER TABLE res_currency ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_currency ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_partner ADD FOREIGN KEY (parent_id) REFERENCES res_partner(id) ON DELETE SET NULL;
ALTER TABLE res_partner ADD FOREIGN KEY (company_id) REFERENCES res_company(id) ON DELETE SET NULL;
ALTER TABLE res_partner ADD FOREIGN KEY (user_id) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_partner ADD FOREIGN KEY (commercial_partner_id) REFERENCES res_partner(id) ON DELETE SET NULL;
ALTER TABLE res_partner ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_partner ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_company ADD FOREIGN KEY (partner_id) REFERENCES res_partner(id) ON DELETE RESTRICT;
ALTER TABLE res_company ADD FOREIGN KEY (currency_id) REFERENCES res_currency(id) ON DELETE RESTRICT;
ALTER TABLE res_company ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_company ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_users ADD FOREIGN KEY (partner_id) REFERENCES res_partner(id) ON DELETE RESTRICT;
ALTER TABLE res_users ADD FOREIGN KEY (company_id) REFERENCES res_company(id) ON DELETE RESTRICT;
ALTER TABLE res_users ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_users ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE ir_model ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE ir_model ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE crm_stage ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE crm_stage ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE crm_lead ADD FOREIGN KEY (user_id) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE crm_lead ADD FOREIGN KEY (company_id) REFERENCES res_company(id) ON DELETE SET NULL;
ALTER TABLE crm_lead ADD FOREIGN KEY (stage_id) REFERENCES crm_stage(id) ON DELETE RESTRICT;
ALTER TABLE crm_lead ADD FOREIGN KEY (partner_id) REFERENCES res_partner(id) ON DELETE SET NULL;
ALTER TABLE crm_lead ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE crm_lead ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE mail_activity_type ADD FOREIGN KEY (triggered_next_type_id) REFERENCES mail_activity_type(id) ON DELETE RESTRICT;
ALTER TABLE mail_activity_type ADD FOREIGN KEY (default_user_id) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE mail_activity_type ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE mail_activity_type ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE mail_activity ADD FOREIGN KEY (res_model_id) REFERENCES ir_model(id) ON DELETE CASCADE;
ALTER TABLE mail_activity ADD FOREIGN KEY (activity_type_id) REFERENCES mail_activity_type(id) ON DELETE RESTRICT;
ALTER TABLE mail_activity ADD FOREIGN KEY (user_id) REFERENCES res_users(id) ON DELETE CASCADE;
ALTER TABLE mail_activity ADD FOREIGN KEY (recommended_activity_type_id) REFERENCES mail_activity_type(id) ON DELETE SET NULL;
ALTER TABLE mail_activity ADD FOREIGN KEY (previous_activity_type_id) REFERENCES mail_activity_type(id) ON DELETE SET NULL;
ALTER TABLE mail_activity ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE mail_activity ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE sale_order ADD FOREIGN KEY (company_id) REFERENCES res_company(id) ON DELETE RESTRICT;
ALTER TABLE sale_order ADD FOREIGN KEY (partner_id) REFERENCES res_partner(id) ON DELETE RESTRICT;
ALTER TABLE sale_order ADD FOREIGN KEY (partner_invoice_id) REFERENCES res_partner(id) ON DELETE RESTRICT;
ALTER TABLE sale_order ADD FOREIGN KEY (partner_shipping_id) REFERENCES res_partner(id) ON DELETE RESTRICT;
ALTER TABLE sale_order ADD FOREIGN KEY (currency_id) REFERENCES res_currency(id) ON DELETE RESTRICT;
ALTER TABLE sale_order ADD FOREIGN KEY (user_id) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE sale_order ADD FOREIGN KEY (opportunity_id) REFERENCES crm_lead(id) ON DELETE SET NULL;
ALTER TABLE sale_order ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE sale_order ADD FOREIGN KEY (write_uid) REFERENCES res_users(id) ON DELETE SET NULL;

-- Indexes of index=True fields (btree; the trigram GIN indexes on name/email_from need pg_trgm and are left out)
CREATE INDEX res_partner__parent_id_index ON res_partner (parent_id);
CREATE INDEX res_partner__company_id_index ON res_partner (company_id);
CREATE INDEX res_partner__complete_name_index ON res_partner (complete_name);
CREATE INDEX res_partner__commercial_partner_id_index ON res_partner (commercial_partner_id);
CREATE INDEX res_users__partner_id_index ON res_users (partner_id);
CREATE INDEX crm_lead__user_id_index ON crm_lead (user_id);
CREATE INDEX crm_lead__team_id_index ON crm_lead (team_id);
CREATE INDEX crm_lead__company_id_index ON crm_lead (company_id);
CREATE INDEX crm_lead__type_index ON crm_lead (type);
CREATE INDEX crm_lead__priority_index ON crm_lead (priority);
CREATE INDEX crm_lead__stage_id_index ON crm_lead (stage_id);
CREATE INDEX crm_lead__date_last_stage_update_index ON crm_lead (date_last_stage_update);
CREATE INDEX crm_lead__partner_id_index ON crm_lead (partner_id);
CREATE INDEX crm_lead__lost_reason_id_index ON crm_lead (lost_reason_id);
CREATE INDEX mail_activity__res_model_id_index ON mail_activity (res_model_id);
CREATE INDEX mail_activity__res_model_index ON mail_activity (res_model);
CREATE INDEX mail_activity__res_id_index ON mail_activity (res_id);
CREATE INDEX mail_activity__date_deadline_index ON mail_activity (date_deadline);
CREATE INDEX mail_activity__user_id_index ON mail_activity (user_id);
CREATE INDEX sale_order__company_id_index ON sale_order (company_id);
CREATE INDEX sale_order__partner_id_index ON sale_order (partner_id);
CREATE INDEX sale_order__state_index ON sale_order (state);
CREATE INDEX sale_order__create_date_index ON sale_order (create_date);
CREATE INDEX sale_order__user_id_index ON sale_order (user_id);
CREATE INDEX sale_order_date_order_id_idx ON sale_order (date_order desc, id desc);  -- SaleOrder.init()
-- Not Odoo's: added for crmflow, which polls by write_date.
CREATE INDEX crmflow_crm_lead_write_date_idx ON crm_lead (write_date);
CREATE INDEX crmflow_sale_order_write_date_idx ON sale_order (write_date);
CREATE INDEX crmflow_mail_activity_write_date_idx ON mail_activity (write_date);

-- ---------------------------------------------------------------------------------------------
-- Seed. Ids are given explicitly (as a restored dump would have them) and the sequences are moved past
-- them at the end, so an INSERT without id gets the next serial value as in Odoo. Timestamps are naive
-- UTC. Users 1 (__system__, OdooBot, archived) and 2 (admin) and partner/company 1 mirror a fresh Odoo.
-- ---------------------------------------------------------------------------------------------

INSERT INTO res_currency (id, name, symbol, active, create_date, write_date) VALUES
 (1, 'EUR', '€', true, '2026-09-01 08:00:00', '2026-09-01 08:00:00');

INSERT INTO res_partner (id, name, complete_name, parent_id, company_id, user_id, type, lang, email, phone, website,
                         is_company, active, commercial_partner_id, create_date, write_date) VALUES
 (1, 'Nordlicht Sensorik GmbH', 'Nordlicht Sensorik GmbH', NULL, NULL, NULL, 'contact', 'en_US', 'info@nordlicht.example', '+49 30 5550100', 'https://nordlicht.example',
  true, true, 1, '2026-09-01 08:00:00', '2026-09-01 08:00:00'),
 (2, 'OdooBot', 'OdooBot', NULL, NULL, NULL, 'contact', 'en_US', 'odoobot@example.com', NULL, NULL,
  false, false, 2, '2026-09-01 08:00:00', '2026-09-01 08:00:00'),
 (3, 'Mitchell Admin', 'Mitchell Admin', NULL, NULL, NULL, 'contact', 'en_US', 'admin@nordlicht.example', NULL, NULL,
  false, true, 3, '2026-09-01 08:00:00', '2026-09-01 08:00:00'),
 (7, 'Marc Demo', 'Marc Demo', NULL, NULL, NULL, 'contact', 'en_US', 'marc.demo@nordlicht.example', NULL, NULL,
  false, true, 7, '2026-09-01 08:10:00', '2026-09-01 08:10:00');

INSERT INTO res_company (id, name, partner_id, currency_id, active, sequence, email, phone, create_date, write_date) VALUES
 (1, 'Nordlicht Sensorik GmbH', 1, 1, true, 0, 'info@nordlicht.example', '+49 30 5550100', '2026-09-01 08:00:00', '2026-09-01 08:00:00');

INSERT INTO res_users (id, login, password, partner_id, company_id, active, share, signature, create_uid, create_date, write_uid, write_date) VALUES
 (1, '__system__', NULL, 2, 1, false, false, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (2, 'admin', NULL, 3, 1, true, false, NULL, 1, '2026-09-01 08:00:00', 2, '2026-09-01 08:00:00'),
 (6, 'marc.demo', NULL, 7, 1, true, false, NULL, 2, '2026-09-01 08:10:00', 2, '2026-09-01 08:10:00');

UPDATE res_partner SET company_id = 1, create_uid = 1, write_uid = 1 WHERE id IN (1, 2, 3, 7);
UPDATE res_currency SET create_uid = 1, write_uid = 1;
UPDATE res_company SET create_uid = 1, write_uid = 1;

-- customers: two companies and a contact person of the first
INSERT INTO res_partner (id, name, complete_name, parent_id, company_id, user_id, type, lang, email, phone, website,
                         is_company, active, commercial_partner_id, create_uid, create_date, write_uid, write_date) VALUES
 (10, 'Acme Logistics', 'Acme Logistics', NULL, NULL, 6, 'contact', 'en_US', 'info@acme-logistics.example', '+49 40 5551200', 'https://acme-logistics.example',
  true, true, 10, 6, '2026-09-14 09:12:41', 6, '2026-09-14 09:12:41'),
 (11, 'Delta Sensors GmbH', 'Delta Sensors GmbH', NULL, NULL, 2, 'contact', 'de_DE', 'office@delta-sensors.example', '+49 89 5550177', 'https://delta-sensors.example',
  true, true, 11, 2, '2026-10-20 13:05:27', 2, '2026-10-20 13:05:27'),
 (12, 'Jana Vogel', 'Delta Sensors GmbH, Jana Vogel', 11, NULL, 2, 'contact', 'de_DE', 'jana.vogel@delta-sensors.example', '+49 151 5550163', NULL,
  false, true, 11, 2, '2026-10-20 13:06:02', 2, '2026-10-20 13:06:02');

INSERT INTO ir_model (id, model, name, create_uid, create_date, write_uid, write_date) VALUES
 (1, 'res.partner', '{"en_US": "Contact"}', 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (2, 'crm.lead', '{"en_US": "Lead"}', 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (3, 'sale.order', '{"en_US": "Sales Order"}', 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00');

-- crm.stage: the four stages of crm_stage_data.xml (Won: sequence 70, is_won), names as jsonb
INSERT INTO crm_stage (id, name, sequence, is_won, requirements, team_id, fold, color, create_uid, create_date, write_uid, write_date) VALUES
 (1, '{"en_US": "New"}', 1, false, NULL, NULL, false, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (2, '{"en_US": "Qualified"}', 2, false, NULL, NULL, false, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (3, '{"en_US": "Proposition", "de_DE": "Angebot"}', 3, false, NULL, NULL, false, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (4, '{"en_US": "Won"}', 70, true, NULL, NULL, false, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00');

-- crm.lead: a lead, three opportunities at different stages, one archived (lost) opportunity
INSERT INTO crm_lead (id, name, user_id, team_id, company_id, referred, description, active, type, priority, stage_id, color,
                      expected_revenue, prorated_revenue, date_closed, date_open, date_last_stage_update, date_deadline,
                      partner_id, contact_name, partner_name, email_from, phone, website, probability, automated_probability,
                      lost_reason_id, create_uid, create_date, write_uid, write_date) VALUES
 (1, 'Baltic Reefer AB: demo request', 6, NULL, 1, NULL, '<p>Asked for a demo via the web form.</p>', true, 'lead', '0', 1, 0,
  0, 0, NULL, '2026-11-30 07:55:19', '2026-11-30 07:55:19', NULL,
  NULL, 'Lars Lindqvist', 'Baltic Reefer AB', 'lars@baltic-reefer.example', '+46 70 5550142', 'https://baltic-reefer.example', 10, 10,
  NULL, 6, '2026-11-30 07:55:19', 6, '2026-11-30 07:55:19'),
 (2, 'Acme fleet telematics rollout', 6, NULL, 1, NULL, NULL, true, 'opportunity', '1', 2, 0,
  48000, 14400, NULL, '2026-11-18 10:03:12', '2026-11-25 09:00:00', '2027-02-26',
  10, NULL, 'Acme Logistics', 'info@acme-logistics.example', '+49 40 5551200', NULL, 30, 30,
  NULL, 6, '2026-11-18 10:03:12', 6, '2026-11-25 09:00:00'),
 (3, 'Delta warehouse sensors', 2, NULL, 1, NULL, '<p>Legal review of contract.</p>', true, 'opportunity', '2', 3, 0,
  260000, 208000, NULL, '2026-10-20 13:09:02', '2026-11-28 11:02:45', '2026-12-18',
  11, 'Jana Vogel', 'Delta Sensors GmbH', 'jana.vogel@delta-sensors.example', '+49 151 5550163', NULL, 80, 70,
  NULL, 2, '2026-10-20 13:09:02', 2, '2026-12-01 09:44:18'),
 (4, 'Acme yard cameras', 6, NULL, 1, NULL, NULL, true, 'opportunity', '1', 4, 0,
  31500, 31500, '2026-11-20 16:02:10', '2026-09-20 08:30:00', '2026-11-20 16:02:10', '2026-11-20',
  10, NULL, 'Acme Logistics', 'info@acme-logistics.example', NULL, NULL, 100, 100,
  NULL, 6, '2026-09-20 08:30:00', 6, '2026-11-20 16:02:10'),
 (5, 'Acme cold storage retrofit', 6, NULL, 1, NULL, NULL, false, 'opportunity', '0', 2, 0,
  90000, 0, '2026-11-02 12:00:00', '2026-10-01 09:00:00', '2026-10-01 09:00:00', '2026-12-31',
  10, NULL, 'Acme Logistics', 'info@acme-logistics.example', NULL, NULL, 0, 12,
  NULL, 6, '2026-10-01 09:00:00', 6, '2026-11-02 12:00:00');

-- mail.activity.type: three of mail_activity_type_data.xml (Email, Call, To-Do)
INSERT INTO mail_activity_type (id, name, summary, sequence, active, delay_count, delay_unit, delay_from, icon, decoration_type,
                                res_model, triggered_next_type_id, chaining_type, category, default_user_id, default_note,
                                create_uid, create_date, write_uid, write_date) VALUES
 (1, '{"en_US": "Email"}', '{"en_US": "Email"}', 3, true, 0, 'days', 'previous_activity', 'fa-envelope', NULL,
  NULL, NULL, 'suggest', 'default', NULL, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (2, '{"en_US": "Call"}', '{"en_US": "Call"}', 6, true, 2, 'days', 'previous_activity', 'fa-phone', NULL,
  NULL, NULL, 'suggest', 'phonecall', NULL, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00'),
 (4, '{"en_US": "To-Do"}', '{"en_US": "To-Do"}', 12, true, 5, 'days', 'previous_activity', 'fa-check', NULL,
  NULL, NULL, 'suggest', 'default', NULL, NULL, 1, '2026-09-01 08:00:00', 1, '2026-09-01 08:00:00');

INSERT INTO mail_activity (id, res_model_id, res_model, res_id, res_name, activity_type_id, summary, note, date_deadline, date_done,
                           automated, user_id, recommended_activity_type_id, previous_activity_type_id, active,
                           create_uid, create_date, write_uid, write_date) VALUES
 (1, 2, 'crm.lead', 2, 'Acme fleet telematics rollout', 2, 'Discovery call with fleet manager', NULL, '2026-12-08', NULL,
  false, 6, NULL, NULL, true, 6, '2026-11-25 09:00:00', 6, '2026-11-25 09:00:00'),
 (2, 2, 'crm.lead', 3, 'Delta warehouse sensors', 4, 'Send revised contract to Delta legal', '<p>Include the 5 percent volume discount.</p>', '2026-12-04', NULL,
  false, 2, NULL, NULL, true, 2, '2026-12-01 09:45:02', 2, '2026-12-01 09:45:02');

-- sale.order: two quotations (16.0 states), linked to their opportunities through sale_crm's opportunity_id
INSERT INTO sale_order (id, name, company_id, partner_id, state, client_order_ref, commitment_date, date_order, origin, reference,
                        require_signature, require_payment, signed_by, signed_on, validity_date, note, partner_invoice_id,
                        partner_shipping_id, pricelist_id, currency_id, currency_rate, user_id, team_id, amount_untaxed,
                        amount_tax, amount_total, invoice_status, opportunity_id, create_uid, create_date, write_uid, write_date) VALUES
 (1, 'S00001', 1, 11, 'sent', NULL, NULL, '2026-11-28 11:02:45', 'Delta warehouse sensors', NULL,
  true, false, NULL, NULL, '2026-12-28', NULL, 11,
  11, 1, 1, 1.0, 2, NULL, 247000.00,
  46930.00, 293930.00, 'no', 3, 2, '2026-11-28 11:02:45', 2, '2026-12-01 09:44:18'),
 (2, 'S00002', 1, 10, 'draft', NULL, NULL, '2026-11-25 09:30:00', 'Acme fleet telematics rollout', NULL,
  true, false, NULL, NULL, '2026-12-25', NULL, 10,
  10, 1, 1, 1.0, 6, NULL, 48000.00,
  9120.00, 57120.00, 'no', 2, 6, '2026-11-25 09:30:00', 6, '2026-11-25 09:30:00');

SELECT setval(pg_get_serial_sequence('res_currency', 'id'), (SELECT max(id) FROM res_currency));
SELECT setval(pg_get_serial_sequence('res_partner', 'id'), (SELECT max(id) FROM res_partner));
SELECT setval(pg_get_serial_sequence('res_company', 'id'), (SELECT max(id) FROM res_company));
SELECT setval(pg_get_serial_sequence('res_users', 'id'), (SELECT max(id) FROM res_users));
SELECT setval(pg_get_serial_sequence('ir_model', 'id'), (SELECT max(id) FROM ir_model));
SELECT setval(pg_get_serial_sequence('crm_stage', 'id'), (SELECT max(id) FROM crm_stage));
SELECT setval(pg_get_serial_sequence('crm_lead', 'id'), (SELECT max(id) FROM crm_lead));
SELECT setval(pg_get_serial_sequence('mail_activity_type', 'id'), (SELECT max(id) FROM mail_activity_type));
SELECT setval(pg_get_serial_sequence('mail_activity', 'id'), (SELECT max(id) FROM mail_activity));
SELECT setval(pg_get_serial_sequence('sale_order', 'id'), (SELECT max(id) FROM sale_order));
