/**
 * A classify prompt that also asks how urgent the ticket is. The simulated
 * model picks labels by cue words in the prompt text, and "how" is one of
 * how_to's: tickets without any other cue (labelled `other`) move to how_to,
 * while every ticket that was billing, refund or bug stays so. (It ignores
 * the system prompt when it picks a label, so a change of the classify system
 * prompt alone moves no label.)
 */
export const CLASSIFY_URGENCY = "Subject: {{item.subject}}\n\n{{item.body}}\n\nHow urgent is it?";
