"""Classroom labs: solution notebooks and the student-version generator (:mod:`labs.make_student`)."""
