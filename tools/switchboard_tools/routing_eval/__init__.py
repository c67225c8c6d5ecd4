"""`make eval-routing`: how well a shop's routing (language detection, rules, intent classifier) names the skill
group of labelled messages: accuracy per group and overall, the confusion matrix, classification time per
message, on the held-out file and by k-fold cross-validation of the training file (docs/routing.md, "Intent
classification")."""
