"""r2d.checks.factcheck: hand-written faithful and unfaithful (case, rationale) pairs, both directions, on the KTAS
narrative and on free-text notes; the rule writer and the checker agree on every KTAS row."""

from __future__ import annotations

import random

import pytest

from r2d.checks.factcheck import (
    KINDS,
    LABEL_MASK,
    Problem,
    case_has_triage_facts,
    check_rationale,
    explain,
    fidelity_summary,
    least_contradicted,
    mask_label_mentions,
    parse_case,
    read_case,
    value_slot,
)
from r2d.checks.rules import ARRIVAL_MODES, MENTAL_STATES, VITALS, TriageFacts, write_rationale
from r2d.sources import ktas_case_text

# the first example case of examples/: the one the issue tried
COLLAPSE = (
    "68-year-old man, arrived by public ambulance, not an injury. Chief complaint: collapse, not breathing "
    "normally. Mental status: unresponsive. Pain not recorded. Blood pressure 70/40 mmHg, heart rate 38/min, "
    "respiratory rate 6/min, temperature not recorded, SpO2 78%."
)
SORE_THROAT = (
    "40-year-old woman, walked in, not an injury. Chief complaint: sore throat. Mental status: alert. "
    "Pain score 2/10. Blood pressure 120/80 mmHg, heart rate 80/min, respiratory rate 16/min, "
    "temperature 36.8 °C, SpO2 98%."
)
FREE_TEXT = "Pt c/o SOB since this morning. BP 90/60, HR 124, RR 28, T 38.5, sats 91% on air, GCS 14, pain 7/10."


def kinds(case: str, rationale: str, label: str | None = None) -> set[str]:
    return {p.kind for p in check_rationale(case, rationale, label).problems}


# --- reading cases -------------------------------------------------------------------------------------


def test_reads_the_ktas_narrative():
    facts = parse_case(COLLAPSE)
    assert (facts.sbp, facts.dbp, facts.heart_rate, facts.resp_rate, facts.spo2) == (70, 40, 38, 6, 78)
    assert facts.temperature is None and facts.mental == "unresponsive" and facts.age == 68
    assert facts.chief_complaint == "collapse, not breathing normally"


def test_reads_free_text_notations():
    case = read_case(FREE_TEXT)
    f = case.facts
    assert (f.sbp, f.dbp, f.heart_rate, f.resp_rate, f.temperature, f.spo2, f.pain_score) == (
        90,
        60,
        124,
        28,
        38.5,
        91,
        7,
    )
    assert case.gcs == 14 and f.mental == "verbal"  # GCS 13-14 ~ V on AVPU


@pytest.mark.parametrize(
    "text, state",
    [
        ("Patient responds only to voice.", "verbal"),
        ("Responds to pain, GCS 8.", "pain"),
        ("Found unconscious.", "unresponsive"),
        ("Alert and oriented.", "alert"),
        ("GCS 15, walking.", "alert"),
        ("U on AVPU after the fall.", "unresponsive"),
    ],
)
def test_reads_avpu_words_and_gcs(text, state):
    assert parse_case(text).mental == state


def test_round_trips_every_generated_narrative():
    rng = random.Random(1)
    for _ in range(300):
        maybe = lambda v: None if rng.random() < 0.2 else v  # noqa: E731
        facts = TriageFacts(
            age=maybe(rng.randint(16, 99)),
            sex=maybe(rng.choice(["female", "male"])),
            arrival=maybe(rng.choice(ARRIVAL_MODES)),
            injury=maybe(rng.random() < 0.3),
            chief_complaint=maybe("abd pain"),
            mental=maybe(rng.choice(MENTAL_STATES)),
            pain=True,
            pain_score=maybe(rng.randint(0, 10)),
            sbp=maybe(rng.randint(50, 240)),
            dbp=maybe(rng.randint(30, 140)),
            heart_rate=maybe(rng.randint(30, 170)),
            resp_rate=maybe(rng.randint(6, 36)),
            temperature=maybe(round(rng.uniform(34, 41), 1)),
            spo2=maybe(rng.randint(60, 100)),
        )
        read = parse_case(ktas_case_text(facts))
        assert read.pain_score == (facts.pain_score or None)  # "No pain." for a score of 0
        for field in (
            "age",
            "mental",
            "sbp",
            "dbp",
            "heart_rate",
            "resp_rate",
            "temperature",
            "spo2",
            "chief_complaint",
            "injury",
        ):
            assert getattr(read, field) == getattr(facts, field), (field, ktas_case_text(facts))
        fc = check_rationale(ktas_case_text(facts), write_rationale(facts))
        assert fc.faithful and fc.critical_named, (ktas_case_text(facts), write_rationale(facts), fc)


@pytest.mark.parametrize("text", ["hello", "안녕하세요, 오늘 날씨가 좋네요.", "What is the capital of France?", ""])
def test_a_case_without_triage_facts_says_so(text):
    assert not case_has_triage_facts(text)
    assert not check_rationale(text, "Vital signs within adult limits, alert.").case_has_facts


@pytest.mark.parametrize("text", [COLLAPSE, FREE_TEXT, "Chief complaint: headache.", "HR 80"])
def test_a_triage_case_has_facts(text):
    assert case_has_triage_facts(text)


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("Chief complaint: abd. pain. Mental status: alert.", "abd. pain"),
        ("Presenting with: chest pain; BP 120/80.", "chest pain"),
        ("Chief complaint: arm pain, lt. HR 80.", "arm pain, lt"),
    ],
)
def test_complaints_keep_their_abbreviations(text, complaint):
    assert parse_case(text).chief_complaint == complaint


# --- faithful rationales pass ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rationale",
    [
        "Unresponsive after a collapse with agonal breathing (RR 6/min), SpO2 78%, HR 38/min and BP 70/40 mmHg: "
        "peri-arrest, needs airway support and resuscitation now.",
        "Chief complaint: collapse, not breathing normally. Unresponsive, SpO2 78% (hypoxaemia, below 92%), "
        "respiratory rate 6/min (bradypnoea, below 10/min), systolic BP 70 mmHg (hypotension, below 90 mmHg), "
        "heart rate 38/min (bradycardia, below 50/min), arrived by ambulance: consciousness is impaired.",
        "Hypotensive, bradycardic, bradypnoea and hypoxic; unresponsive. Temperature not recorded.",
    ],
)
def test_faithful_rationales_of_a_critical_case_pass(rationale):
    fc = check_rationale(COLLAPSE, rationale, "1")
    assert fc.faithful, fc.problems
    assert fc.critical_named, fc.missing_critical


def test_faithful_free_text_rationale_passes():
    rationale = (
        "Short of breath with SpO2 91%, RR 28 and HR 124, febrile at 38.5 °C, BP 90/60, GCS 14, severe pain 7/10."
    )
    fc = check_rationale(FREE_TEXT, rationale)
    assert fc.faithful, fc.problems


# --- unfaithful rationales are caught, with the span of what is wrong ----------------------------------


def test_the_issue_rationale_is_caught_on_every_count():
    """The embedded model's answer to the first example, as the issue quotes it."""
    rationale = (
        "Recorded vital signs within adult limits (SpO2 not recorded), alert, no pain: the chief "
        "complaint, vagal syncope, still needs timely assessment. This fits KTAS 3 (urgent)."
    )
    fc = check_rationale(COLLAPSE, rationale, "1")
    found = {p.kind for p in fc.problems}
    assert {"abnormal_called_normal", "wrong_mental_state", "wrong_complaint", "wrong_level", "wrong_context"} <= found
    assert len(fc.missing_critical) == 5  # unresponsive, SpO2, RR, SBP, HR: none is named
    for p in fc.problems:
        assert 0 <= p.start < p.end <= len(rationale) and p.message
    alert = next(p for p in fc.problems if p.kind == "wrong_mental_state")
    assert rationale[alert.start : alert.end] == "alert"


@pytest.mark.parametrize(
    "rationale, kind",
    [
        ("SpO2 97% and heart rate 80/min.", "number_not_in_case"),
        ("Systolic BP 80 mmHg (severe hypertension, above 180 mmHg).", "normal_called_abnormal"),
        ("Vital signs within adult limits.", "abnormal_called_normal"),
        ("Alert, talking in sentences.", "wrong_mental_state"),
        ("Temperature 38.2 °C.", "number_not_in_case"),  # the case records no temperature
        ("Chief complaint: ankle sprain.", "wrong_complaint"),
        ("Walked in, injured, severe pain 8/10.", "wrong_pain"),
        ("Peri-arrest. This fits KTAS 3 (urgent).", "wrong_level"),
        ("1", "empty"),
        ("   ", "empty"),
    ],
)
def test_each_kind_of_error_is_caught(rationale, kind):
    assert kind in kinds(COLLAPSE, rationale, "1")


@pytest.mark.parametrize(
    "case, rationale, kind",
    [
        (SORE_THROAT, "Tachycardic at rest.", "normal_called_abnormal"),
        (SORE_THROAT, "Febrile, needs antibiotics.", "normal_called_abnormal"),
        (SORE_THROAT, "Responds only to pain.", "wrong_mental_state"),
        (SORE_THROAT, "Severe pain 2/10.", "wrong_pain"),
        (SORE_THROAT, "No pain.", "wrong_pain"),
        (SORE_THROAT, "Arrived by ambulance.", "wrong_context"),
        (SORE_THROAT, "Aged 45, sore throat.", "number_not_in_case"),
        (FREE_TEXT, "Afebrile, normal vital signs.", "abnormal_called_normal"),
        (FREE_TEXT, "No tachycardia, GCS 15.", "abnormal_called_normal"),
        (FREE_TEXT, "GCS 15, alert.", "wrong_mental_state"),
    ],
)
def test_errors_in_the_other_direction_are_caught(case, rationale, kind):
    assert kind in kinds(case, rationale), check_rationale(case, rationale)


def test_normal_case_with_the_true_normal_statement_passes():
    assert (
        kinds(
            SORE_THROAT,
            "Chief complaint: sore throat. Vital signs within adult limits, alert, mild pain "
            "2/10: no sign of an immediate threat in the recorded findings.",
            "5",
        )
        == set()
    )


def test_quoted_limits_are_not_numbers_of_the_case():
    case = SORE_THROAT.replace("36.8 °C", "39.2 °C")
    assert kinds(case, "Temperature 39.2 °C (fever, at or above 38.0 °C).") == set()
    assert "number_not_in_case" in kinds(case, "Temperature 38.0 °C (fever).")


def test_restating_a_complaint_word_is_supported():
    case = SORE_THROAT.replace("sore throat", "fever")
    assert kinds(case, "Chief complaint: fever. Temperature 36.8 °C.") == set()


def test_adult_limits_are_not_applied_to_children():
    child = SORE_THROAT.replace("40-year-old woman", "6-year-old girl").replace("heart rate 80", "heart rate 130")
    assert kinds(child, "Child aged 6: vital signs within adult limits.") == set()
    assert "number_not_in_case" in kinds(child, "Child aged 6, heart rate 90/min.")


def test_every_kind_is_documented():
    assert set(KINDS) >= {
        "empty",
        "number_not_in_case",
        "normal_called_abnormal",
        "abnormal_called_normal",
        "wrong_mental_state",
        "wrong_pain",
        "wrong_complaint",
        "wrong_level",
    }


# --- figures over a data set ------------------------------------------------------------------------------


def test_fidelity_summary_counts_both_ways():
    good = write_rationale(parse_case(COLLAPSE))
    summary = fidelity_summary([COLLAPSE, COLLAPSE, SORE_THROAT], [good, "Vital signs within adult limits.", "1"])
    assert summary["fidelity"] == pytest.approx(1 / 3)
    assert summary["critical_named"] == pytest.approx(1 / 2)  # the sore throat has no critical finding
    assert summary["n_with_critical"] == 2
    assert summary["rationales_with_problem"] == {"empty": 1, "abnormal_called_normal": 1}


def test_fidelity_summary_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 cases but 1"):
        fidelity_summary([COLLAPSE, COLLAPSE], ["x y"])


@pytest.mark.shared_data
def test_rule_rationales_of_every_ktas_row_are_faithful(ktas_examples):
    summary = fidelity_summary(
        [e.case_text for e in ktas_examples], [e.rationale for e in ktas_examples], [e.label for e in ktas_examples]
    )
    assert summary["fidelity"] == 1.0 and summary["critical_named"] == 1.0
    assert summary["cases_without_facts"] == 0


def test_label_mentions_are_masked():
    text = "Unresponsive, SpO2 78%: this fits KTAS 1 (resuscitation); level 2 would be too low. Pain level 3."
    masked = mask_label_mentions(text, ["Resuscitation", "Emergency"])
    assert masked == (
        f"Unresponsive, SpO2 78%: this fits {LABEL_MASK} ({LABEL_MASK}); {LABEL_MASK} would be too low. Pain level 3."
    )
    assert mask_label_mentions("no label here", ["Urgent"]) == "no label here"


def test_least_contradicted_picks_the_candidate_the_case_contradicts_least():
    wrong_rate = "HR 150, BP 90/60, RR 28, SpO2 91%."  # heart rate not the case's, nothing else named
    faithful = "HR 124, BP 90/60, RR 28, SpO2 91%, GCS 14."  # the case's own values
    twice_wrong = "HR 150, BP 120/80, RR 28, SpO2 91%."
    cands = [twice_wrong, wrong_rate, faithful]
    assert check_rationale(FREE_TEXT, faithful).faithful and not check_rationale(FREE_TEXT, wrong_rate).faithful
    assert least_contradicted(FREE_TEXT, cands) == 2
    assert least_contradicted(FREE_TEXT, [twice_wrong, wrong_rate]) == 1  # fewer problems wins
    assert least_contradicted(FREE_TEXT, [faithful, faithful]) == 0  # ties keep the decoder's order


def test_least_contradicted_prefers_naming_the_critical_findings_on_equal_problems():
    silent = "Shortness of breath."
    named = "Shortness of breath, SpO2 91%, RR 28, HR 124, BP 90/60, GCS 14."
    assert check_rationale(FREE_TEXT, silent).missing_critical
    assert not check_rationale(FREE_TEXT, named).missing_critical
    assert least_contradicted(FREE_TEXT, [silent, named]) == 1


def test_least_contradicted_needs_candidates():
    with pytest.raises(ValueError, match="no candidate"):
        least_contradicted(FREE_TEXT, [])


# --- notes as nurses write them ----------------------------------------------------------------------------

NURSE = "55 yo F BIBA c/o SOB since this morning, HR 124 bpm, BP 90/60 mmHg, T 38.5C, sats 91% RA, GCS 14. Hx HTN, DM."


def test_reads_a_note_as_nurses_write_it():
    f = parse_case(NURSE)
    assert (f.age, f.sex, f.arrival, f.chief_complaint) == (55, "female", "public ambulance", "SOB since this morning")
    assert (f.heart_rate, f.sbp, f.dbp, f.temperature, f.spo2, f.mental) == (124, 90, 60, 38.5, 91, "verbal")
    rationale = (
        "Chief complaint: shortness of breath since this morning. SpO2 91% (hypoxaemia, below 92%), heart "
        "rate 124/min (tachycardia, above 120/min), responds only to voice, fever 38.5 °C, arrived by "
        "ambulance: consciousness is impaired, breathing and circulation are at risk."
    )
    assert kinds(NURSE, rationale) == set()


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("Pt c/o chest pain. HR 80.", "chest pain"),
        ("55M presenting with abd. pain x2 days; BP 120/80", "abd. pain x2 days"),
        ("Complaining of headache\nBP 120/80", "headache"),
        ("C/O dizziness. 70 yo M. Alert.", "dizziness"),
        ("Chest pain since this morning. 55M, BIBA. HR 124 BP 90/60.", "chest pain since this morning"),
        ("Abd. pain. 40F. Vitals normal.", "abd. pain"),
        ("D - diarrhea\n40F\nGCS 15", "d - diarrhea"),
        ("62 yo F\nObs afebrile, BP 185/130", None),  # the line after "62 yo F" is not its complaint
        ("55M chest pain. HR 124.", "chest pain"),
        ("HA - headache. GCS 15.", "HA - headache"),
        ("c/o arm pain, lt, HR 80, alert", "arm pain, lt"),
        ("CC pain, chest. AVPU A.", "pain, chest"),
    ],
)
def test_reads_the_complaint_of_free_text(text, complaint):
    assert parse_case(text).chief_complaint == complaint


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "Family at bedside.",
        "55M. Alert. HR 80.",
        "GCS 15. HR 80.",
        "Hx HTN, DM. BP 120/80.",
        "Injured. HR 80.",
        "Female pt. Alert.",
        "No sats. HR 80.",
        "Vitals normal. Alert.",
        "What hurts? HR 80.",
        "Chief complaint not recorded. Mental status: alert.",
    ],
)
def test_no_complaint_is_invented(text):
    assert parse_case(text).chief_complaint is None


@pytest.mark.parametrize(
    "text, state",
    [
        ("AVPU: V.", "verbal"),
        ("AVPU P", "pain"),
        ("AVPU=U", "unresponsive"),
        ("A&Ox3, HR 80", "alert"),
        ("AVPU A", "alert"),
        ("GCS 14/15", "verbal"),
        ("GCS 3", "unresponsive"),
        ("GCS 11", "pain"),
        ("No pain\nV on AVPU", "verbal"),
    ],
)
def test_reads_avpu_letters_and_gcs(text, state):
    assert parse_case(text).mental == state


@pytest.mark.parametrize("text", ["avpu a, HR 80", "A and O", "Vitamin A. HR 80", "pt denies pain, BP 120/80"])
def test_letters_and_words_that_are_not_avpu(text):
    assert parse_case(text).mental is None


@pytest.mark.parametrize(
    "text, age, sex",
    [
        ("55M c/o cough", 55, "male"),
        ("55 yo F", 55, "female"),
        ("55 y/o female", 55, "female"),
        ("Pt 8yo M", 8, "male"),
        ("55-year-old man", 55, "male"),
        ("T 101F, 30 yo F", 30, "female"),
    ],
)
def test_reads_ages_and_sex(text, age, sex):
    f = parse_case(text)
    assert (f.age, f.sex) == (age, sex)


@pytest.mark.parametrize(
    "text",
    [
        "HR 120 bpm, BP 90/60, T 38.5C, RR 24/min, SpO2 91%",
        "sats 91% on room air; temp 38.5 °C; resp 24; pulse 120; B/P 90/60 mmHg",
        "91% RA RR 24 T: 38.5 HR: 120 BP: 90/60",
        "Obs: temp 101.3F HR 120bpm RR 24 BP 90/60 SpO2 91",
        "BP 90/60\nHR 120\nRR 24\nT 38.5\nsats 91%",
    ],
)
def test_reads_vitals_in_any_order_with_units_or_none(text):
    f = parse_case(text)
    assert (f.sbp, f.dbp, f.heart_rate, f.resp_rate, f.temperature, f.spo2) == (90, 60, 120, 24, 38.5, 91)


@pytest.mark.parametrize(
    "text, read",
    [
        ("RR 150/90, HR 80", {"sbp": 150, "dbp": 90, "heart_rate": 80, "resp_rate": None}),  # Riva-Rocci
        ("RR 150", {"resp_rate": None}),
        ("6 yo boy, fever 39.5, HR 140", {"temperature": 39.5, "heart_rate": 140}),
        ("c/o fever for 10 days. HR 80", {"temperature": None, "chief_complaint": "fever for 10 days"}),
        (
            "45 yo M presents with abdo pain RLQ, T 38.2, HR 105",
            {"temperature": 38.2, "chief_complaint": "abdo pain RLQ"},
        ),
    ],
)
def test_free_text_edge_cases(text, read):
    f = parse_case(text)
    assert {k: getattr(f, k) for k in read} == read


def test_afebrile_gives_the_temperature_as_normal():
    note = "23F c/o sore throat x3 days, afebrile, pain 3/10"
    assert read_case(note).normal_vitals == {"temperature"}
    assert "wrong_context" in kinds(note, "Temperature not recorded.")
    assert kinds(note, "Chief complaint: sore throat x3 days. Afebrile, mild pain 3/10.") == set()


def test_a_value_is_not_read_across_a_line_break():
    f = parse_case("No sats\n10/10 pain\nHR 80")
    assert f.spo2 is None and f.pain_score == 10 and f.heart_rate == 80


@pytest.mark.parametrize(
    "note",
    [
        "55M c/o cough. Vitals normal. Alert.",
        "55M c/o cough. Obs stable. Alert.",
        "55M c/o cough, vitals WNL, alert",
        "55M c/o cough. VSS. Alert.",
        "55M c/o cough. Vital signs within normal limits. Alert.",
    ],
)
def test_vitals_normal_supports_within_limits_and_no_number(note):
    case = read_case(note)
    assert case.normal_vitals == set(VITALS) and case.facts.heart_rate is None and case_has_triage_facts(note)
    assert (
        kinds(
            note,
            "Chief complaint: cough. Vital signs within adult limits, alert: no sign of an immediate "
            "threat in the recorded findings.",
        )
        == set()
    )
    assert kinds(note, "Heart rate 80/min, alert.") == {"number_not_in_case"}
    assert "normal_called_abnormal" in kinds(note, "Tachycardic, alert.")
    assert "wrong_context" in kinds(note, "Vital signs not recorded, alert.")


@pytest.mark.parametrize(
    "case, rationale",
    [
        ("Chief complaint: Abd. pain. HR 80.", "Chief complaint: abdominal pain."),
        ("Pt c/o abd pain. HR 80.", "Chief complaint: abdominal pain."),
        ("Pt c/o SOB. HR 80.", "Chief complaint: shortness of breath."),
        ("Chief complaint: shortness of breath. HR 80.", "Chief complaint: SOB."),
        ("c/o dyspnoea, HR 80", "Chief complaint: dyspnea."),
        ("c/o dyspnea, HR 80", "Chief complaint: shortness of breath."),
        ("c/o L arm pain. HR 80", "Chief complaint: left arm pain."),
    ],
)
def test_correct_paraphrases_of_the_complaint_pass(case, rationale):
    assert kinds(case, rationale) == set()


@pytest.mark.parametrize(
    "case, rationale",
    [
        ("Pt c/o SOB. HR 80.", "Chief complaint: chest pain."),
        ("Pt c/o abd pain. HR 80.", "Chief complaint: back pain."),
        ("Chest pain since this morning. 55M, BIBA. HR 80.", "Chief complaint: headache."),
    ],
)
def test_a_wrong_complaint_in_free_text_is_still_caught(case, rationale):
    fc = check_rationale(case, rationale)
    assert {p.kind for p in fc.problems} == {"wrong_complaint"}
    assert "no chief complaint" not in fc.problems[0].message


@pytest.mark.parametrize(
    "case, arrival, flagged",
    [
        ("62 yo M by private ambulance, c/o chest pain", "private ambulance", False),
        ("62 yo M BIBA c/o chest pain", "public ambulance", False),
        ("62 yo M via EMS, c/o chest pain", "public ambulance", False),
        ("62 yo M, walked in, c/o chest pain", "walking", True),
        ("62 yo M by private car, c/o chest pain", "private vehicle", True),
    ],
)
def test_arrival_of_free_text(case, arrival, flagged):
    assert parse_case(case).arrival == arrival
    assert ("wrong_context" in kinds(case, "Chest pain, arrived by ambulance.")) == flagged


# --- what the mutation run showed unpinned --------------------------------------------------------------


@pytest.mark.parametrize(
    "hr, word, flagged",
    [(100, "tachycardia", True), (101, "tachycardia", False), (50, "bradycardia", True), (49, "bradycardia", False)],
)
def test_the_normal_range_bounds_are_normal(hr, word, flagged):
    fc = check_rationale(f"55-year-old man, chest pain, HR {hr}, BP 130/80", f"Chest pain with {word}. Level 3.")
    assert any(p.kind == "normal_called_abnormal" for p in fc.problems) is flagged


def test_every_number_not_in_the_case_is_named():
    case = "55-year-old man, chest pain for 2 hours, HR 88, BP 130/80"
    rationale = "Chest pain for 2 hours, HR 88; seen 7 times this year after 3 falls."
    fc = check_rationale(case, rationale)
    numbers = [p for p in fc.problems if p.kind == "number_not_in_case"]
    assert [(p.message, rationale[p.start : p.end]) for p in numbers] == [
        ("The number 7 is not in the case.", "7"),
        ("The number 3 is not in the case.", "3"),
    ]


def test_a_wrong_vital_is_one_problem_not_two():
    fc = check_rationale("55-year-old man, chest pain, HR 88, BP 130/80", "Chest pain, HR 120, level 3.")
    assert [(p.kind, p.message) for p in fc.problems] == [
        ("number_not_in_case", "Says heart rate 120/min; the case records 88/min.")
    ]


def test_a_complaint_is_read_against_the_whole_case_when_none_is_recognised():
    fc = check_rationale("Patient waiting in the hall", "Chief complaint: chest pain. Level 3.")
    assert [p.message for p in fc.problems] == [
        'Names the complaint "chest pain"; the case records no chief complaint.'
    ]
    assert check_rationale("Waiting: chest pain in the hall", "Chief complaint: chest pain. Level 3.").faithful


def test_an_empty_rationale_still_reports_the_case():
    case = "70-year-old, unresponsive, BP 70/40, HR 38, SpO2 78%"
    fc = check_rationale(case, "  Shock  ")
    assert fc.problems == (
        Problem("empty", "The rationale is empty or a single word; it explains nothing.", 0, len("  Shock  ")),
    )
    full = check_rationale(case, "Unresponsive with BP 70/40, HR 38 and SpO2 78%: resuscitation.")
    assert fc.missing_critical and len(fc.missing_critical) == fc.n_critical == full.n_critical > 0
    assert fc.case_has_facts is True and fc.case_facts == full.case_facts and full.case_has_facts is True
    assert check_rationale("hello there", "Two words.").case_has_facts is False


def test_the_label_shown_takes_part_in_the_choice_and_the_summary():
    case = "55-year-old man, chest pain, HR 88, BP 130/80"
    candidates = ["Chest pain, HR 88, BP 130/80: KTAS 2.", "Chest pain, HR 88, BP 130/80: KTAS 3."]
    assert least_contradicted(case, candidates, "3") == 1 and least_contradicted(case, candidates, "2") == 0
    with pytest.raises(ValueError, match="^no candidate rationales to choose from$"):
        least_contradicted(case, [], "3")
    summary = fidelity_summary([case, case], candidates, ["3", "3"])
    assert (summary["fidelity"], summary["n"]) == (0.5, 2)
    assert fidelity_summary([case], [candidates[0]])["fidelity"] == 1.0  # no label: no level check
    without = fidelity_summary([case, case, "hello there"], [*candidates, "Two words."], ["2", "2", "2"])
    assert without["cases_without_facts"] == 1
    empty = fidelity_summary([], [])
    assert (empty["fidelity"], empty["critical_named"], empty["n"]) == (None, None, 0)


# --- what each problem says, and where the limits fall ----------------------------------------------------
# The messages are what a nurse reads: each expected line below is written from the case and the rationale.

NORMAL_NOTE = "55M c/o cough. Vitals normal. Alert."
PAIN_NO_SCORE = "Chief complaint: headache. Pain present. HR 80."
NO_PAIN = "Chief complaint: headache. No pain. HR 80."


def messages(case: str, rationale: str, label: str | None = None) -> list[str]:
    return [p.message for p in check_rationale(case, rationale, label).problems]


@pytest.mark.parametrize(
    "case, rationale, said",
    [
        (SORE_THROAT, "Heart rate 81/min.", "Says heart rate 81/min; the case records 80/min."),
        (FREE_TEXT, "Temperature 38.6 °C.", "Says temperature 38.6 °C; the case records 38.5 °C."),
        (COLLAPSE, "Temperature 38.2 °C.", "Says temperature 38.2 °C; the case does not record temperature."),
        (
            NORMAL_NOTE,
            "Heart rate 80/min.",
            "Says heart rate 80/min; the case gives no number for it (it says the vital signs are normal).",
        ),
        # the word as written ("desaturating"), not the stem it was found by ("desaturat")
        (SORE_THROAT, "Desaturating at rest.", "Says desaturating; the case records SpO2 98%, which is not low."),
        (
            SORE_THROAT,
            "Tachycardic at rest.",
            "Says tachycardic; the case records heart rate 80/min, which is not raised.",
        ),
        (COLLAPSE, "Feverish since yesterday.", "Says feverish; the case does not record temperature."),
        (NORMAL_NOTE, "Feverish since yesterday.", "Says feverish; the case says the vital signs are normal."),
        (FREE_TEXT, "No desaturation.", "Says no desaturation; the case records SpO2 91%."),
        (FREE_TEXT, "Afebrile on arrival.", "Says afebrile; the case records temperature 38.5 °C."),
        (
            SORE_THROAT.replace("heart rate 80", "heart rate 130"),
            "Vital signs within adult limits.",
            "Says the vital signs are within adult limits; the case records heart rate 130/min.",
        ),
        (
            "Chief complaint: cough.",
            "Vital signs within adult limits.",
            "Says the vital signs are within adult limits; the case records no vital sign.",
        ),
        (SORE_THROAT, "Vital signs not recorded.", "Says the vital signs were not recorded; the case records some."),
        (SORE_THROAT, "(systolic BP not recorded)", "Says systolic BP was not recorded; the case records 120 mmHg."),
        (
            SORE_THROAT,
            "(systolic blood pressure not recorded)",
            "Says systolic BP was not recorded; the case records 120 mmHg.",
        ),
        (SORE_THROAT, "(blood pressure not recorded)", "Says systolic BP was not recorded; the case records 120 mmHg."),
        (SORE_THROAT, "(SpO2 not recorded)", "Says SpO2 was not recorded; the case records 98%."),
        (
            NORMAL_NOTE,
            "Temperature not recorded.",
            "Says temperature was not recorded; the case says the vital signs are normal.",
        ),
        (SORE_THROAT, "Responds only to pain.", "Says responding only to pain; the case records alert."),
        (COLLAPSE, "Responds only to voice.", "Says responding only to voice; the case records unresponsive."),
        (SORE_THROAT, "Unresponsive on arrival.", "Says unresponsive; the case records alert."),
        (COLLAPSE, "Alert and talking.", "Says alert; the case records unresponsive."),
        ("Chief complaint: cough.", "Alert and talking.", "Says alert; the case does not record the mental state."),
        (FREE_TEXT, "GCS 15 on arrival.", "Says GCS 15; the case records GCS 14."),
        (FREE_TEXT, "Pain 8/10 on arrival.", "Says pain 8/10; the case records 7/10."),
        (FREE_TEXT, "8/10 pain on arrival.", "Says pain 8/10; the case records 7/10."),
        (COLLAPSE, "8/10 pain on arrival.", "Says pain 8/10; the case records no pain score."),
        (
            SORE_THROAT.replace("heart rate 80", "heart rate 130").replace("SpO2 98", "SpO2 90"),
            "Vital signs within adult limits.",
            "Says the vital signs are within adult limits; the case records heart rate 130/min, SpO2 90%.",
        ),
        (FREE_TEXT, "Mild pain 7/10 on arrival.", "Calls 7/10 mild pain; it is severe."),
        (FREE_TEXT, "Moderate pain on arrival.", "Says moderate pain; the case records pain 7/10 (severe)."),
        (PAIN_NO_SCORE, "No pain on arrival.", "Says no pain; the case records pain."),
        (COLLAPSE, "Mild pain on arrival.", "Says mild pain; the case records no pain score."),
        (NO_PAIN, "Mild pain on arrival.", "Says mild pain; the case records no pain score."),
        (SORE_THROAT, "Arrived by ambulance.", "Says the patient arrived by ambulance; the case says otherwise."),
        (SORE_THROAT, "Injured while running.", "Says the patient is injured; the case says not an injury."),
        (
            SORE_THROAT,
            "Chief complaint: ankle sprain.",
            'Names the complaint "ankle sprain"; the case records "sore throat".',
        ),
    ],
)
def test_each_problem_says_what_is_wrong(case, rationale, said):
    [problem] = check_rationale(case, rationale).problems
    assert problem.message == said and problem.kind in KINDS
    assert 0 <= problem.start < problem.end <= len(rationale)


@pytest.mark.parametrize("names", ["heart rate and SpO2", "heart rate, SpO2"])
def test_each_vital_said_not_recorded_is_checked(names):
    assert messages(SORE_THROAT, f"Alert ({names} not recorded).") == [
        "Says heart rate was not recorded; the case records 80/min.",
        "Says SpO2 was not recorded; the case records 98%.",
    ]


def test_a_gcs_is_checked_only_against_a_recorded_one():
    assert messages(SORE_THROAT, "GCS 15, alert.") == []  # the case has no GCS; alert agrees


def test_a_problem_spans_the_words_it_is_about():
    rationale = "Walked in. Tachycardic at 80/min? No: heart rate 81/min."
    spans = {p.kind: rationale[p.start : p.end] for p in check_rationale(SORE_THROAT, rationale).problems}
    assert spans == {"normal_called_abnormal": "Tachycardic", "number_not_in_case": "heart rate 81/min"}
    for rationale, words in [
        ("Feverish since yesterday.", "Feverish"),
        ("No desaturation.", "desaturation"),
        ("Afebrile on arrival.", "Afebrile"),
    ]:
        [problem] = check_rationale(FREE_TEXT if words != "Feverish" else COLLAPSE, rationale).problems
        assert rationale[problem.start : problem.end] == words
    [problem] = check_rationale(NORMAL_NOTE, "Feverish, alert.").problems
    assert (problem.start, problem.end) == (0, len("Feverish"))


def test_explain_lists_problems_then_omissions_then_a_case_without_facts():
    assert explain(check_rationale(COLLAPSE, "Temperature 38.2 °C.")) == [
        "Says temperature 38.2 °C; the case does not record temperature.",
        "Leaves out a critical finding: unresponsive.",
        "Leaves out a critical finding: SpO2 78% (hypoxaemia).",
        "Leaves out a critical finding: respiratory rate 6/min (bradypnoea).",
        "Leaves out a critical finding: systolic BP 70 mmHg (hypotension).",
        "Leaves out a critical finding: heart rate 38/min (bradycardia).",
    ]
    assert explain(check_rationale("hello", "Vital signs within adult limits, alert.")) == [
        "Says the vital signs are within adult limits; the case records no vital sign.",
        "Says alert; the case does not record the mental state.",
        "The case holds none of the triage facts the model was trained on.",
    ]
    assert explain(check_rationale(SORE_THROAT, "Sore throat, alert, mild pain 2/10.")) == []


@pytest.mark.parametrize(
    "rationale, missing",
    [
        # a vital named with its value names that finding only
        ("Heart rate 38/min, unresponsive.", ("SpO2 78%", "respiratory rate 6/min", "systolic BP 70 mmHg")),
        # so does an abnormality word
        ("Bradycardic, unresponsive.", ("SpO2 78%", "respiratory rate 6/min", "systolic BP 70 mmHg")),
        ("Hypoxic, bradypnoea, hypotensive and bradycardic; GCS 3.", ()),
        ("Hypoxic, bradypnoea, hypotensive and bradycardic; alert.", ("unresponsive",)),
    ],
)
def test_only_the_findings_a_rationale_names_count_as_named(rationale, missing):
    findings = {
        "SpO2 78%": "SpO2 78% (hypoxaemia)",
        "respiratory rate 6/min": "respiratory rate 6/min (bradypnoea)",
        "systolic BP 70 mmHg": "systolic BP 70 mmHg (hypotension)",
        "unresponsive": "unresponsive",
    }
    assert check_rationale(COLLAPSE, rationale).missing_critical == tuple(findings[m] for m in missing)


@pytest.mark.parametrize(
    "gcs, state", [(15, "alert"), (14, "verbal"), (13, "verbal"), (12, "pain"), (9, "pain"), (8, "unresponsive")]
)
def test_gcs_maps_to_avpu_at_every_boundary(gcs, state):
    assert parse_case(f"GCS {gcs}. HR 80.").mental == state


def test_adult_limits_start_at_sixteen():
    case = SORE_THROAT.replace("heart rate 80", "heart rate 130")
    for age, flagged in [(16, True), (15, False)]:
        young = case.replace("40-year-old woman", f"{age}-year-old girl")
        assert ("abnormal_called_normal" in kinds(young, "Vital signs within adult limits.")) == flagged
        # "no tachycardia" contradicts an adult's 130/min only
        assert ("abnormal_called_normal" in kinds(young, "No tachycardia.")) == flagged


@pytest.mark.parametrize(
    "case, rationale",
    [
        (SORE_THROAT, "No tachycardia, no desaturation."),  # true of 80/min and 98%
        (FREE_TEXT, "Short of breath, pain 7/10."),  # a score without a band word
        (PAIN_NO_SCORE, "Mild pain on arrival."),  # pain without a score: any band but "no" may be said
        (SORE_THROAT, "Afebrile on arrival."),
        # the vitals named with their values are the "other" ones' exceptions
        (
            SORE_THROAT.replace("heart rate 80", "heart rate 124"),
            "Heart rate 124/min, other vital signs within adult limits.",
        ),
        # "fever" restated from the case, then a second abnormality word still checked
        (SORE_THROAT.replace("sore throat", "fever"), "Fever, not tachycardic."),
    ],
)
def test_true_statements_about_normal_vitals_pass(case, rationale):
    assert kinds(case, rationale) == set()


def test_a_restated_complaint_word_does_not_end_the_check():
    case = SORE_THROAT.replace("sore throat", "fever")
    assert messages(case, "Fever, tachycardic.") == [
        "Says tachycardic; the case records heart rate 80/min, which is not raised."
    ]
    # matched whatever the case of its letters
    assert kinds(SORE_THROAT.replace("sore throat", "Fever"), "fever today.") == set()
    # an abnormality word after a negated one is still checked
    assert messages(SORE_THROAT, "No tachycardia, hypoxic.") == [
        "Says hypoxic; the case records SpO2 98%, which is not low."
    ]
    assert messages(NORMAL_NOTE, "No fever, tachycardic, alert.") == [
        "Says tachycardic; the case says the vital signs are normal."
    ]


def test_a_named_abnormal_vital_still_fails_a_plain_within_limits():
    case = SORE_THROAT.replace("heart rate 80", "heart rate 130")
    assert messages(case, "Heart rate 130/min; vital signs within adult limits.") == [
        "Says the vital signs are within adult limits; the case records heart rate 130/min."
    ]


@pytest.mark.parametrize(
    "rationale, flagged",
    [
        ("Headache, severity 7/10.", []),  # the 10 of x/10 is allowed
        ("Headache, severity 7 / 10.", []),  # spaced as some notes write it
        ("Headache, severity 7/12.", ["12"]),  # another denominator is not
        ("Headache for 10 minutes.", ["10"]),  # nor a 10 that is not after a slash
        ("Below 92% would be hypoxaemia; SpO2 98%.", []),  # a quoted limit, from the first character on
        ("92% would be hypoxaemia; SpO2 98%.", ["92"]),  # the same number, not quoted as a limit
        ("SpO2 98%; below 93 would matter.", ["93"]),  # quoted as a limit, but no limit of the rules
    ],
)
def test_quoted_constants_are_allowed_only_as_quoted(rationale, flagged):
    case = "55M c/o headache, severity 7, SpO2 98%."
    assert [
        rationale[p.start : p.end] for p in check_rationale(case, rationale).problems if p.kind == "number_not_in_case"
    ] == flagged


@pytest.mark.parametrize(
    "note, complaint",
    [
        ("Walked in. HR 80.", None),  # an arrival
        ("Alert. HR 80.", None),  # a mental state
        ("Afebrile. HR 80.", None),  # a normal vital
        ("No pain. HR 80.", None),  # a pain statement
        ("Chest pain. Alert.", "chest pain"),  # the rest states a mental state only
        ("Rt knee pain. HR 80.", "rt knee pain"),  # a capitalised first word
        ("McBurney point tenderness. HR 80.", "McBurney point tenderness"),  # a name, kept as written
        # twelve words are a complaint, thirteen a sentence of the note
        (
            "Sudden onset of pain in the left lower chest since this morning. HR 80.",
            "sudden onset of pain in the left lower chest since this morning",
        ),
        ("Sudden onset of sharp pain in the left lower chest since this morning. HR 80.", None),
    ],
)
def test_an_opening_sentence_is_a_complaint_only_when_it_states_nothing_else(note, complaint):
    assert parse_case(note).chief_complaint == complaint


def test_longer_label_names_are_masked_first():
    # "Urgent" sorts after "Less urgent" but is inside it: the longer name goes first
    assert (
        mask_label_mentions("Less urgent, not Urgent.", ["Urgent", "Less urgent"]) == f"{LABEL_MASK}, not {LABEL_MASK}."
    )


@pytest.mark.parametrize(
    "before, slot",
    [
        ("HR ", "heart_rate"),  # shorter than the tail read
        ("Chief complaint: chest pain since this morning, then HR ", "heart_rate"),
        ("Heart rate " + " " * 40, None),  # the name is further back than the tail read
        ("BP 120/", "dbp"),
        ("pain 7/", "pain_scale"),
        ("above ", "limit"),
        ("Chief complaint: ", None),
    ],
)
def test_value_slot_reads_the_words_right_before_a_number(before, slot):
    assert value_slot(before) == slot


@pytest.mark.parametrize(
    "note, complaint",
    [
        ("Chief complaint: Not recorded. HR 80.", None),
        # said anywhere in the note, even after a sentence that could be read as one
        ("Seen by GP this morning. Complaint not recorded. HR 80.", None),
    ],
)
def test_a_complaint_not_recorded_is_none(note, complaint):
    assert parse_case(note).chief_complaint == complaint


@pytest.mark.parametrize(
    "note",
    [
        "Mental status: alert. Found unresponsive by family, now recovered.",
        "mental status: alert. Found unresponsive by family, now recovered.",
    ],
)
def test_the_narratives_mental_status_wins_over_words_elsewhere(note):
    assert parse_case(note).mental == "alert"


@pytest.mark.parametrize(
    "note, pain, score",
    [
        ("HR 80, pain 7/10.", True, 7),
        ("Pain present. HR 80.", True, None),
        ("No pain. HR 80.", False, None),
        ("Pain-free. HR 80.", False, None),
        ("Denies pain, HR 80.", False, None),
        ("HR 80.", None, None),
    ],
)
def test_pain_is_read_with_or_without_a_score(note, pain, score):
    facts = parse_case(note)
    assert (facts.pain, facts.pain_score) == (pain, score)


def test_every_vital_written_is_read_not_only_the_first_of_a_pattern():
    # the first blood pressure is the case's; a second one is not read over it
    assert (parse_case("BP 90/60 on arrival, BP 120/80 after fluids.").sbp, parse_case("BP 90/60 on arrival.").dbp) == (
        90,
        60,
    )
    # a value read by one pattern does not stop another pattern reading a later value
    assert messages("SpO2 91% RA. HR 80.", "SpO2 91% RA, 88% RA on walking.") == [
        "Says SpO2 88%; the case records 91%."
    ]
    # nor does a quoted limit stop the value after it
    assert parse_case("Fever is at or above 38.0 °C; measured 39.2 °C.").temperature == 39.2


def test_a_limit_quoted_at_the_very_start_is_a_limit():
    # 38.0 is the fever limit, not a temperature of the patient, even as the rationale's first words
    assert kinds(SORE_THROAT, "Above 38.0 °C would count; temperature 36.8 °C.") == set()


def test_fahrenheit_is_read_as_celsius_to_one_decimal():
    assert parse_case("T 100.5F, HR 80").temperature == 38.1  # (100.5 - 32) * 5 / 9 = 38.06


def test_an_age_right_after_a_vital_on_the_next_line_is_read():
    # "Sats 98" is read with the line break after it; the age starting there is not part of it
    f = parse_case("Sats 98\n55 yo F, c/o cough")
    assert (f.spo2, f.age, f.sex) == (98, 55, "female")


@pytest.mark.parametrize("note, gcs", [("GCS 15. HR 80.", 15), ("GCS 3. HR 80.", 3), ("GCS 16. HR 80.", None)])
def test_a_gcs_outside_3_to_15_is_not_read(note, gcs):
    assert read_case(note).gcs == gcs


@pytest.mark.parametrize("note", ["Injured at work. HR 80.", "Trauma call, HR 80."])
def test_an_injury_is_read_whatever_the_case_of_its_letters(note):
    assert parse_case(note).injury is True


@pytest.mark.parametrize(
    "note, field, value",
    [
        ("Not an injury. HR 80.", "injury", False),
        ("130 yo M, HR 80.", "age", 130),
        ("131 yo M, HR 80.", "age", None),  # no one is that old: a misread number
        ("HR 80, pain 10/10.", "pain_score", 10),
        ("HR 80, pain 11/10.", "pain_score", None),  # off the 0-10 scale
    ],
)
def test_values_off_their_scale_are_not_read(note, field, value):
    assert getattr(parse_case(note), field) == value


@pytest.mark.parametrize(
    "note, found",
    [
        ("GCS 14. HR 80.", ("heart_rate", "mental", "gcs")),
        (NORMAL_NOTE, ("mental", "chief_complaint", "vitals_normal")),
    ],
)
def test_the_facts_found_are_listed_in_order(note, found):
    assert read_case(note).found == found


def test_a_recognised_complaint_is_the_only_one_a_rationale_may_name():
    # the case's complaint is shortness of breath; chest pain is in its history, not its complaint
    assert kinds("Pt c/o SOB. Hx chest pain. HR 80.", "Chief complaint: chest pain.") == {"wrong_complaint"}
