"""The method: the Reason2Decide losses (trainer), the alpha and scheduled-sampling schedules, and the
tokenised features both stages train on."""
