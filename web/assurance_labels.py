"""What the stop-and-search pages call things: labels, map colours, form suggestions, and
the columns of their tables."""

from tracker.stops.models import GOWISELY

# What the review form sends: everything update_review accepts except the sampling flag.
REVIEW_FORM_FIELDS = (
    "status",
    "outcome",
    "no_footage_reason",
    *GOWISELY,
    "grounds_reasonable",
    "grounds_note",
    "camera",
    "camera_note",
    "conduct_respectful",
    "conduct_explained",
    "conduct_de_escalated",
    "grade",
    "findings",
    "rag",
)
ASSESSMENT_LABELS = {
    "grounds_reasonable": "Were the grounds objectively reasonable? (PACE Code A, 2.2)",
    "camera": "What did the camera record?",
    "conduct_respectful": "Conduct: respectful",
    "conduct_explained": "Conduct: explained what was happening and why",
    "conduct_de_escalated": "Conduct: de-escalated",
    "grade": "Overall grade",
}
CAMERA_LABELS = {
    "whole": "The whole encounter, from before it began",
    "joined_late": "Switched on late",
    "stopped_early": "Switched off early",
    "none": "None of it",
}
GRADE_LABELS = {"good_practice": "Good practice", "learning": "Learning", "concern": "Concern"}
GOWISELY_LABELS = {
    "grounds": "G – grounds for the search",
    "object": "O – object of the search",
    "warrant_card": "W – warrant card shown (if not in uniform)",
    "identity": "I – identity (name or number) of the officer",
    "station": "S – station the officer is attached to",
    "entitlement": "E – entitlement to a copy of the record",
    "legal_power": "L – legal power used",
    "you_are_detained": "Y – \u201cyou are detained for the purpose of a search\u201d",
}
STATUS_LABELS = {"pending": "Pending", "reviewed": "Reviewed", "no_footage": "No footage"}
OUTCOME_LABELS = {
    "no_issues": "No issues",
    "learning_identified": "Learning identified",
    "referred": "Referred",
}
# Map marker colours by where a stop's review stands.
REVIEW_STATE_COLOURS = {
    "overdue": "#cf222e",
    "pending": "#d4a72c",
    "reviewed": "#1a7f37",
    "no_footage": "#6e7781",
    "not sampled": "#0969da",
}
# Common values of the published data, offered as suggestions on the entry form.
SUGGESTIONS = {
    "object_of_search": (
        "Controlled drugs",
        "Offensive weapons",
        "Stolen goods",
        "Article for use in theft",
        "Articles for use in criminal damage",
        "Firearms",
        "Anything to threaten or harm anyone",
        "Evidence of offences under the Act",
    ),
    "outcome": (
        "A no further action disposal",
        "Arrest",
        "Community resolution",
        "Summons / charged by post",
        "Penalty Notice for Disorder",
        "Khat or Cannabis warning",
        "Caution (simple or conditional)",
    ),
    "legislation": (
        "Misuse of Drugs Act 1971 (section 23)",
        "Police and Criminal Evidence Act 1984 (section 1)",
        "Criminal Justice and Public Order Act 1994 (section 60)",
        "Firearms Act 1968 (section 47)",
    ),
    "gender": ("Male", "Female", "Other"),
    "age_range": ("under 10", "10-17", "18-24", "25-34", "over 34"),
    "self_defined_ethnicity": (
        "White - English/Welsh/Scottish/Northern Irish/British",
        "White - Irish",
        "White - Any other White background",
        "Black/African/Caribbean/Black British - African",
        "Black/African/Caribbean/Black British - Caribbean",
        "Black/African/Caribbean/Black British - Any other Black/African/Caribbean background",
        "Asian/Asian British - Indian",
        "Asian/Asian British - Pakistani",
        "Asian/Asian British - Bangladeshi",
        "Asian/Asian British - Chinese",
        "Asian/Asian British - Any other Asian background",
        "Mixed/Multiple ethnic groups - White and Black Caribbean",
        "Mixed/Multiple ethnic groups - White and Black African",
        "Mixed/Multiple ethnic groups - White and Asian",
        "Mixed/Multiple ethnic groups - Any other Mixed/Multiple ethnic background",
        "Other ethnic group - Arab",
        "Other ethnic group - Any other ethnic group",
        "Other ethnic group - Not stated",
    ),
    "officer_defined_ethnicity": ("White", "Black", "Asian", "Mixed", "Other"),
}

BREAKDOWN_COLUMNS = [
    ("searches", "Searches"),
    ("share_pct", "Share %"),
    ("finds", "Finds"),
    ("find_rate_pct", "Find rate %"),
    ("arrests", "Arrests"),
    ("arrest_rate_pct", "Arrest rate %"),
    ("review_coverage_pct", "Reviewed %"),
    ("referred", "Referred"),
]
POPULATION_COLUMNS = [
    ("population", "Population"),
    ("searches_per_1000", "Per 1,000"),
    ("disproportionality_ratio", "Rate ratio to White"),
]
QUEUE_TABLE = [
    ("stop_id", "Stop"),
    ("reference", "Reference"),
    ("occurred_at", "When"),
    ("hotspot_id", "Hot spot"),
    ("officer_id", "Officer"),
    ("bwv_recorded", "BWV"),
    ("bwv_reference", "BWV reference"),
    ("due_date", "Due"),
    ("overdue", "Overdue"),
    ("days_overdue", "Days overdue"),
]
MINE_TABLE = [
    ("id", "Stop"),
    ("reference", "Reference"),
    ("occurred_at", "When"),
    ("type", "Type"),
    ("hotspot_id", "Hot spot"),
    ("object_of_search", "Object"),
    ("outcome", "Outcome"),
    ("review_status", "Review"),
    ("review_outcome", "Review outcome"),
    ("due_date", "Review due"),
]
QUEUE_DISPLAY_LIMIT = 1000
