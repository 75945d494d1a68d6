# Supervised upper bound (paper's "supervisor b"): basic-train + extended-train crops, the extended labels
# revealed (use_hidden_labels=True: gt_label = true_label instead of -1). Batches of 128.
_base_ = ['./bus_crops.py']
train_dataloader = dict(dataset=dict(
    _delete_=True, type='ConcatDataset',
    datasets=[_base_.train_dataloader.dataset,
              dict(_base_.train_dataloader.dataset, ann_file='extended_train.json', use_hidden_labels=True)]))
